"""The scan study: thermodynamics of every attention head (``heads``) and §3.1's detector (``critical``)."""
