"""Infrastructure apart from the science: the study contract (``study``) and the sweep runner (``sweep``)."""
