"""The canonical-ensemble identity check: a model's own attention against Boltzmann weights (``contract``)."""
