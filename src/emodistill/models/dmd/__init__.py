"""DMD (Li, Wang, Cui, CVPR 2023) and our reconstruction of DHMD (TPAMI 2026).

``config`` the hyper-parameters, ``model`` the forward pass, ``losses`` the training objective,
``gd_unit`` the graph distillation unit, ``official`` the import of official checkpoints,
``dictionary`` and ``dhmd`` the dictionary matching of DHMD. The specification these modules follow
is ``docs/dmd-spec.md``.
"""
