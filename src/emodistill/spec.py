"""Description of a data set that models size themselves from (pyannote's "specifications").

A model never reads feature dimensions, sequence lengths or the label range from constants: it is
built from a :class:`DatasetSpec`, which the data reader derives from the arrays it loaded. The spec
is stored in every checkpoint so that a model can be rebuilt without the data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

MODALITIES: tuple[str, str, str] = ("text", "audio", "vision")
"""MMSA's modality keys, in the order MMSA lists feature dims (T, A, V)."""


@dataclass(frozen=True)
class DatasetSpec:
    """Shapes and label conventions of one data set.

    Attributes:
        name: data-set family, one of ``mosi``, ``mosei``, ``sims``, ``synth`` or ``custom``. It picks
            the metric family (SIMS metrics for ``sims``) and the label range check.
        aligned: True for word-aligned files (no ``*_lengths`` keys), False for unaligned ones.
        feature_dims: per modality, the last dimension of the feature arrays, e.g.
            ``{"text": 768, "audio": 5, "vision": 20}``.
        seq_lens: per modality, the padded sequence length T of the arrays, e.g.
            ``{"text": 50, "audio": 375, "vision": 500}``.
        label_range: closed interval that every regression label lies in.
        has_text_bert: whether the file carries ``text_bert`` token ids (needed to fine-tune BERT).
    """

    name: str
    aligned: bool
    feature_dims: dict[str, int]
    seq_lens: dict[str, int]
    label_range: tuple[float, float] = (-3.0, 3.0)
    has_text_bert: bool = True
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("feature_dims", "seq_lens"):
            value = getattr(self, key)
            missing = [m for m in MODALITIES if m not in value]
            if missing:
                raise ValueError(f"DatasetSpec.{key} lacks {missing}; expected keys {list(MODALITIES)}")
        lo, hi = self.label_range
        if not lo < hi:
            raise ValueError(f"DatasetSpec.label_range={self.label_range} must be an interval lo < hi")

    @property
    def metric_family(self) -> str:
        """``"sims"`` for CH-SIMS (labels in [-1, 1]), otherwise ``"mosi"`` (MOSI/MOSEI conventions)."""
        return "sims" if self.name.startswith("sims") else "mosi"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["label_range"] = list(self.label_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DatasetSpec:
        d = dict(d)
        d["label_range"] = tuple(d.get("label_range", (-3.0, 3.0)))
        return cls(**d)
