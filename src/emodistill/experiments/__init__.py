"""Experiments built from many training runs: ablation grids (``ablate``), model comparisons
(``compare``), robustness curves (``robustness``) and hyper-parameter search (``tune``); ``grid`` holds
their output directories and plans."""
