"""Description of a data set that models size themselves from (pyannote's "specifications").

A model never reads feature dimensions, sequence lengths or the label range from constants: it is
built from a :class:`DatasetSpec`, which the data reader derives from the arrays it loaded. The spec
is stored in every checkpoint so that a model can be rebuilt without the data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

MODALITIES: tuple[str, str, str] = ("text", "audio", "vision")
"""MMSA's modality keys, in the order MMSA lists feature dims (T, A, V)."""
FRAME_MODALITIES: tuple[str, str] = ("audio", "vision")
"""The modalities whose features are frame sequences with a length per clip (``audio_lengths``,
``vision_lengths`` in MMSA files and batches; named features, normalisation statistics and a maximum frame
count in extraction). Text is a token sequence; its valid length comes from the ``text_bert`` mask."""

SHORT_NAMES: dict[str, str] = {"text": "l", "audio": "a", "vision": "v"}
"""One-letter name of each modality (``l`` for language, as DMD and MulT write it): the keys inside those
models and the ``<m>`` of :meth:`~emodistill.models.base.MERModel.interpret` keys (``features/homo/l``)."""
LONG_NAMES: dict[str, str] = {short: long for long, short in SHORT_NAMES.items()}
"""Inverse of :data:`SHORT_NAMES`: the batch / spec key (:data:`MODALITIES`) of each one-letter name."""
LABEL_SUFFIXES: dict[str, str] = {"text": "T", "audio": "A", "vision": "V"}
"""MMSA's suffix of each modality's unimodal label (CH-SIMS): ``label_T`` in ``label.csv``,
``regression_labels_T`` in the feature pickles."""

TASKS: tuple[str, str] = ("regression", "binary")
"""Prediction tasks: ``regression`` (MOSI/MOSEI/SIMS sentiment scores) or ``binary`` (UR-FUNNY humour,
MUStARD sarcasm; labels 0/1, the model predicts one logit per clip)."""
BINARY_LABEL_RANGE: tuple[float, float] = (0.0, 1.0)


def is_binary_task(task: str) -> bool:
    """The one regression/binary switch: True if ``task`` is ``"binary"``, where a model predicts one logit
    per clip, labels are 0/1 and the task loss is the binary cross-entropy of the logits; False for
    ``"regression"`` (scores, L1 loss)."""
    return task == "binary"


@dataclass(frozen=True)
class DatasetSpec:
    """Shapes and label conventions of one data set.

    Attributes:
        name: data-set family, one of ``mosi``, ``mosei``, ``sims``, ``synth``, ``custom`` (MMSA
            pickles), ``urfunny`` or ``mustard``. For regression it picks the metric family (SIMS
            metrics for ``sims``) and the label range check.
        aligned: True when all modalities share one word timeline of one length T (MMSA aligned files,
            which have no ``*_lengths`` keys; UR-FUNNY), False for unaligned ones.
        feature_dims: per modality, the last dimension of the feature arrays, e.g.
            ``{"text": 768, "audio": 5, "vision": 20}``.
        seq_lens: per modality, the padded sequence length T of the arrays, e.g.
            ``{"text": 50, "audio": 375, "vision": 500}``.
        label_range: closed interval that every regression label lies in; ``(0, 1)`` for binary tasks.
        has_text_bert: whether the file carries ``text_bert`` token ids (needed to fine-tune BERT).
        extra: free-form, serialisable provenance, e.g. the reader options that fixed the sequence
            lengths (``{"reader": "urfunny", "context_sentences": 0, "max_len": 50}``).
        task: ``"regression"`` (labels are scores in ``label_range``) or ``"binary"`` (labels are 0/1
            and a model's prediction is a logit, class 1 iff logit > 0). Checkpoints written before
            this field existed lack it and load as regression.
    """

    name: str
    aligned: bool
    feature_dims: dict[str, int]
    seq_lens: dict[str, int]
    label_range: tuple[float, float] = (-3.0, 3.0)
    has_text_bert: bool = True
    extra: dict[str, object] = field(default_factory=dict)
    task: str = "regression"

    def __post_init__(self) -> None:
        for key in ("feature_dims", "seq_lens"):
            value = getattr(self, key)
            missing = [m for m in MODALITIES if m not in value]
            if missing:
                raise ValueError(f"DatasetSpec.{key} lacks {missing}; expected keys {list(MODALITIES)}")
        lo, hi = self.label_range
        if not lo < hi:
            raise ValueError(f"DatasetSpec.label_range={self.label_range} must be an interval lo < hi")
        if self.task not in TASKS:
            raise ValueError(f"DatasetSpec.task={self.task!r}; expected one of {list(TASKS)}")
        if self.is_binary and tuple(self.label_range) != BINARY_LABEL_RANGE:
            raise ValueError(
                f"DatasetSpec.label_range={self.label_range} for task 'binary'; expected {BINARY_LABEL_RANGE} "
                "(labels are 0/1)"
            )

    @property
    def is_binary(self) -> bool:
        """True for a binary task (labels 0/1, predictions are logits); see :func:`is_binary_task`."""
        return is_binary_task(self.task)

    @property
    def metric_family(self) -> str:
        """``"binary"`` for binary tasks, ``"sims"`` for CH-SIMS (labels in [-1, 1]), otherwise ``"mosi"``
        (MOSI/MOSEI conventions)."""
        if self.is_binary:
            return "binary"
        return "sims" if self.name.startswith("sims") else "mosi"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["label_range"] = list(self.label_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DatasetSpec:
        """Inverse of :meth:`to_dict`; dicts from older checkpoints (no ``task``) load as regression."""
        d = dict(d)
        d["label_range"] = tuple(d.get("label_range", (-3.0, 3.0)))
        return cls(**d)
