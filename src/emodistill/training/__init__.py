"""Training: configuration and recipes (``config``, typed fields in ``fields``), the epoch loop and evaluation
pass (``loop``), a run on disk with model selection (``fit``) in its run directory (``run_dir``), and
data-parallel training under torchrun (``distributed``)."""
