"""Optional BERT text encoder: local loading, DMD wiring on ``text_bert``, fine-tuning gradients."""

from __future__ import annotations

import builtins

import pytest
import torch

from emodistill.models import create_model
from emodistill.spec import DatasetSpec

transformers = pytest.importorskip("transformers")

SPEC = DatasetSpec(
    "mosi", True, {"text": 768, "audio": 4, "vision": 6}, {"text": 10, "audio": 12, "vision": 9}
)
TINY = dict(d_model=8, num_heads=2, nlevels=1, gd_size_homo=8, gd_size_hetero=4)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    cfg = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    path = tmp_path_factory.mktemp("tiny_bert")
    transformers.BertModel(cfg).save_pretrained(path)
    return str(path)


def bert_batch(bsz: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 100, (bsz, 10), generator=g).float()
    mask = torch.ones(bsz, 10)
    mask[0, 7:] = 0.0
    ids[0, 7:] = 0.0
    return {
        "text_bert": torch.stack([ids, mask, torch.zeros(bsz, 10)], dim=1),
        "audio": torch.randn(bsz, 12, 4, generator=g),
        "vision": torch.randn(bsz, 9, 6, generator=g),
        "labels": torch.tensor([1.0, -0.5, 1.0][:bsz]),
    }


def test_dmd_fine_tunes_the_text_encoder(bert_dir):
    model = create_model("dmd", SPEC, text_encoder=bert_dir, **TINY)
    assert model.in_dims["l"] == 32  # feature width comes from the encoder, not spec.feature_dims
    assert model.config.text_encoder_config["hidden_size"] == 32
    batch = bert_batch()
    out = model(batch)
    assert out.prediction.shape == (3, 1)
    model.compute_losses(out, batch["labels"])["loss"].backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("text_model.") and "pooler" not in n]
    assert grads and all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_encoder_output_is_last_hidden_state(bert_dir):
    model = create_model("dmd", SPEC, text_encoder=bert_dir, **TINY).eval()
    ref = transformers.BertModel.from_pretrained(bert_dir).eval()
    tb = bert_batch()["text_bert"]
    with torch.no_grad():
        ours = model.text_model(tb)
        want = ref(
            input_ids=tb[:, 0].long(), attention_mask=tb[:, 1], token_type_ids=tb[:, 2].long()
        ).last_hidden_state
    torch.testing.assert_close(ours, want)


def test_frozen_encoder_gets_no_gradients(bert_dir):
    model = create_model("dmd", SPEC, text_encoder=bert_dir, finetune_text=False, **TINY)
    batch = bert_batch()
    model.compute_losses(model(batch), batch["labels"])["loss"].backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("text_model."))
    assert model.proj["l"].weight.grad is not None


def test_rebuild_from_recorded_architecture_without_directory(bert_dir, tmp_path):
    model = create_model("dmd", SPEC, text_encoder=bert_dir, **TINY).eval()
    cfg = model.config_dict()
    cfg["text_encoder"] = str(tmp_path / "gone")  # the directory no longer exists
    again = create_model("dmd", SPEC, **cfg).eval()
    again.load_state_dict(model.state_dict(), strict=True)
    batch = bert_batch()
    with torch.no_grad():
        torch.testing.assert_close(again(batch).prediction, model(batch).prediction)


def test_missing_directory_without_architecture_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        create_model("dmd", SPEC, text_encoder=str(tmp_path / "nope"), **TINY)


def test_batch_without_text_bert_is_rejected(bert_dir):
    model = create_model("dmd", SPEC, text_encoder=bert_dir, **TINY)
    batch = bert_batch()
    del batch["text_bert"]
    with pytest.raises(KeyError, match="text_bert"):
        model(batch)


def test_missing_transformers_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "transformers" or name.startswith("transformers."):
            raise ImportError("No module named 'transformers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    from emodistill.models.layers.text_encoder import TextEncoder

    with pytest.raises(ImportError, match=r"emodistill\[text\]"):
        TextEncoder(config={"model_type": "bert"})
