"""The grokking study: one run (``train``), its thermometer and onset detection, the grid of runs (``study``)."""
