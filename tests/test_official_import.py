"""Official checkpoint import: every official parameter name/shape (tests/data/official_state_dicts) maps
onto ours, loads strictly and covers all of our parameters; values land where they belong."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emodistill.models import create_model
from emodistill.models.dmd.model import CROSS_PAIRS, MODS
from emodistill.models.dmd.official import (
    bert_config_from_state_dict,
    convert_official_state_dict,
    import_official,
    official_config,
    official_spec,
)
from emodistill.models.registry import load_checkpoint

DATA = Path(__file__).parent / "data" / "official_state_dicts"
SETTINGS = [("mosi", "aligned"), ("mosi", "unaligned"), ("mosei", "aligned"), ("mosei", "unaligned")]


def official_shapes(dataset: str, setting: str) -> dict[str, tuple[int, ...]]:
    path = DATA / f"{dataset}_{setting}.txt"
    shapes = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        shapes[key] = tuple(int(v) for v in shape.strip("()").split(",") if v.strip())
    return shapes


def fake_official(dataset: str, setting: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) for k, s in official_shapes(dataset, setting).items()}


@pytest.mark.parametrize("dataset,setting", SETTINGS)
def test_every_official_parameter_maps_and_covers_ours(dataset, setting):
    sd = fake_official(dataset, setting)
    spec, cfg = official_spec(dataset, setting), official_config(dataset)
    converted = convert_official_state_dict(sd, spec, cfg)
    model = create_model("dmd", spec, **cfg)
    own = model.state_dict()
    body = [k for k in own if not k.startswith(("gd_homo.", "gd_hetero."))]
    assert sorted(converted) == sorted(body)  # every body parameter covered, nothing extra
    model.load_state_dict({**own, **converted}, strict=True)
    # element count: official minus proj_cosine and the encoders' buffers
    dropped = sum(
        t.numel()
        for k, t in sd.items()
        if k.startswith("proj_cosine") or k.endswith(("version", "_float_tensor"))
    )
    assert sum(t.numel() for t in converted.values()) == sum(t.numel() for t in sd.values()) - dropped


def test_values_land_in_the_right_member_and_layer():
    sd = fake_official("mosi", "unaligned")
    spec, cfg = official_spec("mosi", "unaligned"), official_config("mosi")
    out = convert_official_state_dict(sd, spec, cfg)
    member = CROSS_PAIRS.index(("v", "a"))
    assert torch.equal(
        out["crossmodal.in_proj_weight"][2, member], sd["trans_v_with_a.layers.2.self_attn.in_proj_weight"]
    )
    assert torch.equal(
        out["crossmodal.ln1_bias"][0, CROSS_PAIRS.index(("a", "l"))],
        sd["trans_a_with_l.layers.0.layer_norms.1.bias"],
    )
    assert torch.equal(out["mem.fc2_weight"][3, MODS.index("a")], sd["trans_a_mem.layers.3.fc2.weight"])
    assert torch.equal(
        out["self_attn_c.norm_weight"][MODS.index("v")], sd["self_attentions_c_v.layer_norm.weight"]
    )
    assert torch.equal(out["homo_proj2.v.weight"], sd["proj2_v_low.weight"])
    assert torch.equal(out["fuse_in_c.bias"], sd["weight_c.bias"])
    assert torch.equal(out["fusion_out.weight"], sd["out_layer.weight"])
    assert torch.equal(out["proj.a.weight"], sd["proj_a.weight"])


def test_gd_unit_state_dicts_map_too():
    spec, cfg = official_spec("mosi", "aligned"), official_config("mosi")
    homo = {
        "W_logit.weight": torch.randn(64, 1),
        "W_logit.bias": torch.randn(64),
        "W_repr.weight": torch.randn(64, 50),
        "W_repr.bias": torch.randn(64),
        "W_edge.weight": torch.randn(1, 256),
        "W_edge.bias": torch.randn(1),
    }
    out = convert_official_state_dict(fake_official("mosi", "aligned"), spec, cfg, gd_homo=homo)
    assert torch.equal(out["gd_homo.W_edge.weight"], homo["W_edge.weight"])
    assert not any(k.startswith("gd_hetero.") for k in out)


def test_shape_mismatch_names_key_and_shapes():
    sd = fake_official("mosi", "aligned")
    sd["align_c_v.weight"] = torch.randn(50, 24800)  # an unaligned checkpoint's layer
    with pytest.raises(ValueError, match=r"align_c_v\.weight.*\(50, 2300\).*\(50, 24800\)"):
        convert_official_state_dict(sd, official_spec("mosi", "aligned"), official_config("mosi"))


def test_unknown_and_missing_keys_are_errors():
    spec, cfg = official_spec("mosei", "aligned"), official_config("mosei")
    sd = fake_official("mosei", "aligned")
    with pytest.raises(KeyError, match="mystery"):
        convert_official_state_dict({**sd, "mystery.weight": torch.zeros(1)}, spec, cfg)
    del sd["trans_l_mem.layers.1.fc1.weight"]
    with pytest.raises(KeyError, match=r"mem\.fc1_weight.*\(1, 0\)"):
        convert_official_state_dict(sd, spec, cfg)


def _tiny_bert_sd(prefix: str = "text_model.model.") -> dict[str, torch.Tensor]:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=40,
        hidden_size=768,
        num_hidden_layers=1,
        num_attention_heads=12,
        intermediate_size=64,
        max_position_embeddings=60,
        type_vocab_size=2,
    )
    bert = transformers.BertModel(cfg)
    sd = {prefix + k: v for k, v in bert.state_dict().items()}
    sd[prefix + "embeddings.position_ids"] = torch.arange(60).unsqueeze(0)  # transformers-4.x buffer
    return sd


def test_import_official_end_to_end_with_bert(tmp_path):
    sd = {**fake_official("mosi", "aligned"), **_tiny_bert_sd()}
    assert bert_config_from_state_dict(sd)["num_hidden_layers"] == 1
    src = tmp_path / "dmd.pth"
    torch.save(sd, src)
    model = import_official(src, "mosi", "aligned", tmp_path / "ours.ckpt")
    assert model.config.text_encoder_config["vocab_size"] == 40
    assert torch.equal(
        model.state_dict()["text_model.model.embeddings.word_embeddings.weight"],
        sd["text_model.model.embeddings.word_embeddings.weight"],
    )
    loaded, ckpt = load_checkpoint(tmp_path / "ours.ckpt")
    assert ckpt["model_name"] == "dmd" and ckpt["spec"]["seq_lens"] == {"text": 50, "audio": 50, "vision": 50}
    batch = {
        "text_bert": torch.stack(
            [torch.randint(0, 40, (2, 50)).float(), torch.ones(2, 50), torch.zeros(2, 50)], 1
        ),
        "audio": torch.randn(2, 50, 5),
        "vision": torch.randn(2, 50, 20),
    }
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch).prediction, model(batch).prediction)


def test_import_official_without_bert_uses_text_features(tmp_path):
    src = tmp_path / "dmd.pth"
    torch.save(fake_official("mosei", "unaligned"), src)
    model = import_official(src, "mosei", "unaligned", tmp_path / "out.ckpt")
    assert model.text_model is None and model.t_out == {"l": 46, "v": 498, "a": 500}


def test_import_rejects_wrong_setting(tmp_path):
    src = tmp_path / "dmd.pth"
    torch.save(fake_official("mosi", "unaligned"), src)
    with pytest.raises(ValueError, match=r"align_c_v\.weight.*aligned/unaligned"):
        import_official(src, "mosi", "aligned", tmp_path / "out.ckpt")
