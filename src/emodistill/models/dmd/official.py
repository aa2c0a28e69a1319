"""Import checkpoints of the official DMD code (github.com/mdswyz/DMD) into emodistill's ``dmd`` model.

The official trainer saves ``DMD.state_dict()`` (``pt/dmd.pth``); key names and shapes per data set and
setting are listed in ``tests/data/official_state_dicts/`` (those of the released checkpoints). The mapping:

* plain layers are renamed (``proj_l`` -> ``proj.l``, ``proj1_l_low`` -> ``homo_proj1.l``,
  ``weight_c`` -> ``fuse_in_c``, ``proj1`` -> ``fusion_proj1``, ...);
* the twelve transformer encoders are stacked into three grouped encoders (``self_attentions_c_*`` ->
  ``self_attn_c``, ``trans_*_with_*`` -> ``crossmodal``, ``trans_*_mem`` -> ``mem``; member order in
  :data:`~emodistill.models.dmd.model.MODS` / :data:`~emodistill.models.dmd.model.CROSS_PAIRS`): official
  ``trans_v_with_a.layers.2.self_attn.in_proj_weight`` becomes ``crossmodal.in_proj_weight[2, 3]``;
* ``proj_cosine_*`` (never trained), the encoders' ``version`` and ``embed_positions._float_tensor``
  buffers and BERT's ``position_ids`` / ``token_type_ids`` buffers are dropped;
* BERT weights (``text_model.model.*``) keep their names. The official models always fine-tune
  bert-base-uncased; the import rebuilds that architecture from the checkpoint's own shapes
  (vocabulary, width, depth, FFN width, positions; heads = width / 64 as in every BERT), so no hub
  access is needed. A local ``text_encoder`` directory may be given instead; its shapes must match.
* The GD-Units are separate modules in the official code and are not in ``pt/dmd.pth``; their official
  state dicts can be passed to :func:`convert_official_state_dict`, otherwise the import keeps freshly
  initialised units (they only matter for further training).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from emodistill.errors import UserError
from emodistill.models.dmd.config import DMDConfig
from emodistill.models.dmd.model import CROSS_PAIRS, MODS
from emodistill.spec import LONG_NAMES, DatasetSpec


class OfficialFormatError(UserError, KeyError):
    """An official state_dict lacks, or has in excess, keys of the DMD model this importer knows."""


_OFFICIAL_HPARAMS = {
    "mosi": {},  # DMDConfig defaults are the official MOSI values
    "mosei": dict(
        d_model=30,
        num_heads=6,
        kernel_l=5,
        kernel_a=1,
        kernel_v=3,
        text_dropout=0.3,
        attn_dropout=0.4,
        attn_dropout_a=0.0,
        attn_dropout_v=0.0,
        embed_dropout=0.0,
    ),
}
_OFFICIAL_DIMS = {
    "mosi": {"text": 768, "audio": 5, "vision": 20},
    "mosei": {"text": 768, "audio": 74, "vision": 35},
}
_OFFICIAL_LENS = {  # the lengths hard-coded in the official dmd.py (MMSA's processed pickles)
    ("mosi", "aligned"): {"text": 50, "audio": 50, "vision": 50},
    ("mosi", "unaligned"): {"text": 50, "audio": 375, "vision": 500},
    ("mosei", "aligned"): {"text": 50, "audio": 50, "vision": 50},
    ("mosei", "unaligned"): {"text": 50, "audio": 500, "vision": 500},
}
_RENAMES = {  # official prefix -> ours (per-modality entries generated below)
    "encoder_c": "encoder_c",
    "proj1_c": "c_proj1",
    "proj2_c": "c_proj2",
    "out_layer_c": "c_out",
    "weight_c": "fuse_in_c",
    "proj1": "fusion_proj1",
    "proj2": "fusion_proj2",
    "out_layer": "fusion_out",
}
for _m in MODS:
    _RENAMES.update(
        {
            f"proj_{_m}": f"proj.{_m}",
            f"encoder_s_{_m}": f"encoder_s.{_m}",
            f"decoder_{_m}": f"decoder.{_m}",
            f"align_c_{_m}": f"align_c.{_m}",
            f"proj1_{_m}_low": f"homo_proj1.{_m}",
            f"proj2_{_m}_low": f"homo_proj2.{_m}",
            f"out_layer_{_m}_low": f"homo_out.{_m}",
            f"proj1_{_m}_high": f"hetero_proj1.{_m}",
            f"proj2_{_m}_high": f"hetero_proj2.{_m}",
            f"out_layer_{_m}_high": f"hetero_out.{_m}",
            f"weight_{_m}": f"fuse_in.{_m}",
        }
    )
_ENCODERS = {f"self_attentions_c_{m}": ("self_attn_c", i) for i, m in enumerate(MODS)}
_ENCODERS.update({f"trans_{t}_with_{s}": ("crossmodal", i) for i, (t, s) in enumerate(CROSS_PAIRS)})
_ENCODERS.update({f"trans_{m}_mem": ("mem", i) for i, m in enumerate(MODS)})
_ENC_PARAMS = {
    "self_attn.in_proj_weight": "in_proj_weight",
    "self_attn.in_proj_bias": "in_proj_bias",
    "self_attn.out_proj.weight": "out_proj_weight",
    "self_attn.out_proj.bias": "out_proj_bias",
    "fc1.weight": "fc1_weight",
    "fc1.bias": "fc1_bias",
    "fc2.weight": "fc2_weight",
    "fc2.bias": "fc2_bias",
    "layer_norms.0.weight": "ln0_weight",
    "layer_norms.0.bias": "ln0_bias",
    "layer_norms.1.weight": "ln1_weight",
    "layer_norms.1.bias": "ln1_bias",
}
_DROPPED = re.compile(
    r"^(proj_cosine_[lva]\.(weight|bias)|.*\.version|.*\.embed_positions\._float_tensor"
    r"|text_model\.model\.embeddings\.(position_ids|token_type_ids))$"
)
_BERT = "text_model.model."


def official_config(dataset: str) -> dict:
    """``DMDConfig`` keyword arguments with the official hyper-parameters of ``dataset`` (mosi | mosei)."""
    if dataset not in _OFFICIAL_HPARAMS:
        raise ValueError(f"official DMD configs exist for {sorted(_OFFICIAL_HPARAMS)}, not {dataset!r}")
    return asdict(DMDConfig(**_OFFICIAL_HPARAMS[dataset]))


def official_spec(dataset: str, setting: str) -> DatasetSpec:
    """The DatasetSpec the official code hard-codes for ``dataset`` / ``setting`` (aligned | unaligned)."""
    if (dataset, setting) not in _OFFICIAL_LENS:
        raise ValueError(
            f"unknown official setting {dataset!r}/{setting!r}; expected mosi|mosei, aligned|unaligned"
        )
    return DatasetSpec(
        name=dataset,
        aligned=setting == "aligned",
        feature_dims=dict(_OFFICIAL_DIMS[dataset]),
        seq_lens=dict(_OFFICIAL_LENS[(dataset, setting)]),
        has_text_bert=True,
    )


def bert_config_from_state_dict(official_sd: dict[str, Tensor]) -> dict:
    """A BERT architecture dict (``TextEncoder`` config) inferred from ``text_model.model.*`` shapes.

    Heads are ``hidden / 64`` (the head width of every released BERT); the rest comes from shapes.
    """

    def shape(key: str) -> tuple[int, ...]:
        if _BERT + key not in official_sd:
            raise OfficialFormatError(f"official checkpoint lacks {_BERT + key} "
                                      "(needed to infer the BERT architecture)")
        return tuple(official_sd[_BERT + key].shape)

    vocab, hidden = shape("embeddings.word_embeddings.weight")
    layers = 1 + max(
        int(k[len(_BERT) :].split(".")[2]) for k in official_sd if k.startswith(_BERT + "encoder.layer.")
    )
    return dict(
        model_type="bert",
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=shape("encoder.layer.0.intermediate.dense.weight")[0],
        max_position_embeddings=shape("embeddings.position_embeddings.weight")[0],
        type_vocab_size=shape("embeddings.token_type_embeddings.weight")[0],
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        layer_norm_eps=1e-12,
        pad_token_id=0,
    )


def _expected_shapes(spec: DatasetSpec, cfg: dict) -> dict[str, tuple[int, ...]]:
    from emodistill.models.dmd.model import DMD

    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = DMD(spec, DMDConfig(**cfg))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def convert_official_state_dict(
    official_sd: dict[str, Tensor],
    spec: DatasetSpec,
    cfg: DMDConfig | dict,
    *,
    gd_homo: dict[str, Tensor] | None = None,
    gd_hetero: dict[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Map an official DMD state dict (and optionally the GD-Units') onto ours.

    Args:
        official_sd: ``DMD.state_dict()`` of the official model (``module.`` prefixes are stripped).
        spec: our spec (sequence lengths and feature dims fix the layer shapes).
        cfg: our config (dataclass or keyword dict); with BERT weights in ``official_sd`` it must
            configure a text encoder of the same architecture.
        gd_homo: optional official HomoGD ``DistillationKernel.state_dict()``.
        gd_hetero: optional official HeteroGD ``DistillationKernel.state_dict()``.

    Returns:
        Our state dict. It covers every parameter of ours except the GD-Units when their dicts are
        not given (callers fill those from a fresh model).

    Raises:
        KeyError: an official key that is unknown, or a parameter of ours that no official key covers.
        ValueError: a shape mismatch (message names the key, expected and found shapes).
    """
    cfg = asdict(cfg) if isinstance(cfg, DMDConfig) else dict(cfg)
    if official_sd and all(k.startswith("module.") for k in official_sd):
        official_sd = {k[len("module.") :]: v for k, v in official_sd.items()}
    expected = _expected_shapes(spec, cfg)
    out: dict[str, Tensor] = {}
    stacks: dict[str, dict[tuple[int, ...], Tensor]] = {}  # ours -> {(layer, member) | (member,): tensor}

    def put(ours: str, off_key: str, tensor: Tensor, index: tuple[int, ...] = ()) -> None:
        if ours not in expected:
            raise OfficialFormatError(
                f"official key {off_key!r} maps to {ours!r}, which this model does not have "
                "(a BERT checkpoint needs a text encoder in the config)"
            )
        want = expected[ours][len(index) :]
        if tuple(tensor.shape) != want:
            raise ValueError(
                f"official key {off_key!r} (-> {ours!r}): expected shape {want}, found {tuple(tensor.shape)}"
            )
        if index:
            stacks.setdefault(ours, {})[index] = tensor.detach()
        else:
            out[ours] = tensor.detach().clone()

    for key, tensor in official_sd.items():
        if _DROPPED.match(key):
            continue
        if key.startswith(_BERT):
            put(key, key, tensor)
            continue
        prefix, _, rest = key.partition(".")
        if prefix in _ENCODERS:
            group, member = _ENCODERS[prefix]
            layer = re.match(r"layers\.(\d+)\.(.+)$", rest)
            if layer and layer.group(2) in _ENC_PARAMS:
                put(f"{group}.{_ENC_PARAMS[layer.group(2)]}", key, tensor, (int(layer.group(1)), member))
                continue
            if rest in ("layer_norm.weight", "layer_norm.bias"):
                put(f"{group}.norm_{rest.split('.')[1]}", key, tensor, (member,))
                continue
        elif prefix in _RENAMES and rest in ("weight", "bias"):
            put(f"{_RENAMES[prefix]}.{rest}", key, tensor)
            continue
        raise OfficialFormatError(f"official key {key!r} is not part of the DMD model this importer knows")

    for unit, sd in (("gd_homo", gd_homo), ("gd_hetero", gd_hetero)):
        for key, tensor in (sd or {}).items():
            put(f"{unit}.{key}", f"{unit}:{key}", tensor)
    for ours, parts in stacks.items():
        lead = expected[ours][: len(next(iter(parts)))]  # (L, G) or (G,)
        want = list(itertools.product(*(range(n) for n in lead)))
        if sorted(parts) != want:
            missing = sorted(set(want) - set(parts))
            raise OfficialFormatError(f"{ours}: official encoders do not cover (layer, member) entries {missing[:4]}")
        out[ours] = torch.stack([parts[ix] for ix in want]).view(*lead, *expected[ours][len(lead) :]).clone()
    missing = [k for k in expected if k not in out and not k.startswith(("gd_homo.", "gd_hetero."))]
    if missing:
        raise OfficialFormatError(
            f"official state dict does not cover {len(missing)} parameters of ours, e.g. {missing[:5]}"
        )
    return out


def import_official(
    ckpt_path: str | Path,
    dataset: str,
    setting: str,
    out_path: str | Path,
    text_encoder: str | None = None,
):
    """Convert an official DMD checkpoint into an emodistill checkpoint at ``out_path``.

    Args:
        ckpt_path: official ``.pth`` state dict (loaded with ``weights_only=True``).
        dataset: ``mosi`` or ``mosei`` (picks the official hyper-parameters and feature dims).
        setting: ``aligned`` or ``unaligned`` (picks the official sequence lengths).
        out_path: where to write our checkpoint.
        text_encoder: optional local HF directory whose architecture matches the checkpoint's BERT.

    Returns:
        The imported model (eval mode).
    """
    from emodistill.checkpoint import build_checkpoint, save_checkpoint
    from emodistill.models import create_model

    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{ckpt_path}: official checkpoint not found")
    try:
        sd = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types (EOFError, OSError, UnpicklingError) for a corrupt file
        raise ValueError(f"{ckpt_path}: expected a torch.save'd state dict, found an unreadable file "
                         f"({type(e).__name__}: {e})") from e
    if not isinstance(sd, dict):
        raise ValueError(f"{ckpt_path}: expected an official DMD state dict, found {type(sd).__name__}")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    spec, cfg = official_spec(dataset, setting), official_config(dataset)
    _check_dims(sd, spec, cfg, ckpt_path)
    has_bert = any(k.startswith(_BERT) for k in sd)
    if text_encoder is not None:
        cfg["text_encoder"] = str(text_encoder)
    elif has_bert:
        cfg["text_encoder_config"] = bert_config_from_state_dict(sd)
    model = create_model("dmd", spec, **cfg)
    converted = convert_official_state_dict(sd, spec, model.config)
    own = model.state_dict()
    for k in own:  # GD-Units (not in official checkpoints) and, without BERT weights, the local encoder
        converted.setdefault(k, own[k])
    model.load_state_dict(converted, strict=True)
    ckpt = build_checkpoint(
        model,
        "dmd",
        spec,
        model.config_dict(),
        data={
            "source": "official DMD checkpoint",
            "path": str(ckpt_path),
            "dataset": dataset,
            "setting": setting,
        },
    )
    save_checkpoint(out_path, ckpt)
    return model.eval()


def _check_dims(sd: dict[str, Tensor], spec: DatasetSpec, cfg: dict, path: Path) -> None:
    """Check width, kernels, input dims and lengths of an official checkpoint against the official setup."""
    d = cfg["d_model"]
    for m in MODS:
        key = LONG_NAMES[m]
        k = f"proj_{m}.weight"
        if k not in sd:
            raise OfficialFormatError(f"{path}: {k} missing; not an official DMD checkpoint?")
        want = (d, spec.feature_dims[key], cfg[f"kernel_{m}"])
        if tuple(sd[k].shape) != want:
            raise ValueError(
                f"{path}: {k} has shape {tuple(sd[k].shape)}, expected {want} "
                f"(d={d}, {key} dim, kernel_{m}) for this dataset"
            )
        k = f"align_c_{m}.weight"
        t_out = spec.seq_lens[key] - cfg[f"kernel_{m}"] + 1
        if k in sd and tuple(sd[k].shape) != (d, d * t_out):
            raise ValueError(
                f"{path}: {k} has shape {tuple(sd[k].shape)}, expected {(d, d * t_out)} "
                f"(T'={t_out}); wrong setting (aligned/unaligned)?"
            )
