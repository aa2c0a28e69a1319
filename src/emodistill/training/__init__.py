"""Training: configuration and recipes (``config``), the epoch loop and evaluation pass (``loop``), a run
on disk with model selection (``fit``), and data-parallel training under torchrun (``distributed``)."""
