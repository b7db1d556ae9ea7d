"""The committee machine as studies: the state-evolution phase diagram and AMP on finite instances
(``contract``: ``SE_STUDY``, ``AMP_STUDY``), built on ``thermolens.committee`` (Aubin et al. 2018,
arXiv:1806.05451)."""
