"""The mean-field studies: ``critical`` (critical couplings on parameter grids, several resolutions),
``rates`` (relaxation at criticality: PDE and particles) and their study objects in ``contract``.

Built from ``thermolens.meanfield`` (no new physics here); they answer the Mun & Rosenzweig claims of
``thermolens.claims.meanfield`` (arXiv:2604.16288).
"""
