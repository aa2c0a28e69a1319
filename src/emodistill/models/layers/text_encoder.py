"""Optional fine-tuned BERT text encoder for DMD (the official ``BertTextEncoder``, docs/dmd-spec.md §1.2).

Hugging Face ``transformers`` is imported lazily, only when a text encoder is configured; install it
with the ``text`` extra (``pip install "emodistill[text]"``). Weights come from a local directory
(``save_pretrained`` layout), from a hub name (transformers fetches it or reads its cache; the only path
that can reach the network), or, when only the architecture is known (an imported official checkpoint,
any emodistill checkpoint), from the checkpoint's state dict after a randomly initialised build.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn

ARCH_KEYS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "pad_token_id",
)
"""Config keys that fix a BERT-style architecture (kept in ``DMDConfig.text_encoder_config``)."""


def _transformers():
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "DMD's BERT text encoder needs Hugging Face transformers; install the `text` extra: "
            'pip install "emodistill[text]"'
        ) from e
    return transformers


class TextEncoder(nn.Module):
    """BERT-style encoder mapping ``text_bert`` token rows to contextual embeddings.

    Args:
        path: local directory with ``config.json`` and weights (``save_pretrained`` layout), or a hub name
            such as ``bert-base-uncased`` (fetched by transformers on a connected machine, or read from its
            cache; offline without a cache it fails with a message asking for a local copy).
        config: architecture dict (see :data:`ARCH_KEYS`); used when ``path`` is None or missing, and
            then the weights are random until a state dict is loaded.
        finetune: when False the encoder runs under ``no_grad`` with frozen parameters (official
            ``use_finetune=False``); DMD's official setting is True.
    """

    def __init__(self, path: str | None = None, config: dict | None = None, finetune: bool = True) -> None:
        super().__init__()
        tf = _transformers()
        if path is not None and Path(path).is_dir():
            self.model = tf.AutoModel.from_pretrained(path, local_files_only=True)
        elif config is not None:
            cfg = dict(config)
            hf_config = tf.AutoConfig.for_model(cfg.pop("model_type", "bert"), **cfg)
            self.model = tf.AutoModel.from_config(hf_config)
        elif path is not None:  # a hub name (e.g. bert-base-uncased): transformers fetches or reads its cache
            try:
                self.model = tf.AutoModel.from_pretrained(path)
            except (OSError, ValueError) as e:  # not found / offline; ValueError: not even a valid repo id
                raise FileNotFoundError(
                    f"text encoder {path!r} is neither a local save_pretrained directory nor loadable from the "
                    f"Hugging Face hub or its cache ({e}); give a local copy, e.g. --model.text_encoder /path/to/"
                    f"{Path(path).name}"
                ) from e
        else:
            raise ValueError("TextEncoder needs a local model directory `path` or an architecture `config`")
        self.finetune = finetune
        if not finetune:
            self.model.requires_grad_(False)

    @property
    def hidden_size(self) -> int:
        """Width ``H`` of the returned embeddings."""
        return int(self.model.config.hidden_size)

    def architecture(self) -> dict:
        """The architecture-defining subset of the model's config (plain values, checkpoint-safe)."""
        full = self.model.config.to_dict()
        return {k: full[k] for k in ARCH_KEYS if k in full}

    def forward(self, text_bert: Tensor) -> Tensor:
        """Encode MMSA ``text_bert`` rows.

        Args:
            text_bert: ``(B, 3, T)`` float rows: input ids, attention mask, token type ids.

        Returns:
            ``(B, T, H)`` last hidden state for all ``T`` positions (padding included, as official).
        """
        input_ids = text_bert[:, 0].long()
        attention_mask = text_bert[:, 1].float()
        token_type_ids = text_bert[:, 2].long()
        with nullcontext() if self.finetune else torch.no_grad():
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
        return out[0]


def build_text_encoder(cfg, spec, owner: str) -> TextEncoder | None:
    """The encoder a model config asks for, or None.

    ``cfg`` has the fields ``text_encoder`` (directory or hub name), ``text_encoder_config`` (architecture)
    and ``finetune_text``, as DMD, MulT, MISA and Self-MM share. The built architecture is written back to
    ``cfg.text_encoder_config``, so a checkpoint rebuilds the encoder without the original directory.

    Raises:
        ValueError: an encoder is configured but ``spec`` has no ``text_bert`` token rows.
    """
    if cfg.text_encoder is None and cfg.text_encoder_config is None:
        return None
    if not spec.has_text_bert:
        raise ValueError(f"{owner} text_encoder needs `text_bert` token rows, but spec {spec.name!r} has none")
    encoder = TextEncoder(cfg.text_encoder, cfg.text_encoder_config, cfg.finetune_text)
    if cfg.text_encoder_config is None:
        cfg.text_encoder_config = encoder.architecture()
    return encoder
