"""The claims of the seed papers, each tested with a verdict a referee accepts (``thermolens claims``).

``base`` defines a claim and its evidence, ``registry`` the fixed claim ids, ``verdicts`` Holm's
family-wise control and the sensitivity rule, ``run`` the report runner. One module per group of
claims that share their studies: ``scaling``, ``criticality``, ``training``, ``kim``, ``meanfield``,
``committee``.
"""
