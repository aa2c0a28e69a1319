"""Using a trained model: evaluation of a checkpoint on a split of a data set (``evaluate``) and prediction
on new videos (``Predictor``)."""

from emodistill.inference.evaluation import Evaluation, check_compatible, evaluate
from emodistill.inference.predictor import CheckpointNotPredictable, Predictor

__all__ = ["CheckpointNotPredictable", "Evaluation", "Predictor", "check_compatible", "evaluate"]
