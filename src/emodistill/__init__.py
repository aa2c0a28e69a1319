"""emodistill: multimodal emotion recognition with decoupled multimodal distillation.

Public API::

    from emodistill import load_dataset, create_model, train, load_checkpoint
"""

__version__ = "0.1.0"

from emodistill.spec import DatasetSpec  # noqa: E402

__all__ = ["DatasetSpec", "__version__"]
