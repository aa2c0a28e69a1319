"""ONNX export: the graph in ONNX Runtime reproduces PyTorch eval within 1e-5 (aligned and unaligned, other
batch sizes and, where the axes are dynamic, other sequence lengths), carries the checkpoint's description,
and refuses what it cannot express in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from emodistill.checkpoint import build_checkpoint, save_checkpoint  # noqa: E402
from emodistill.cli import main  # noqa: E402
from emodistill.inference.export import example_inputs, export_onnx, read_metadata  # noqa: E402
from emodistill.inference.onnx_runtime import OnnxModel  # noqa: E402
from emodistill.models import create_model  # noqa: E402
from emodistill.models.layers.plain_encoder import plain_encoders  # noqa: E402
from emodistill.spec import DatasetSpec  # noqa: E402

DIMS = {"text": 16, "audio": 5, "vision": 7}
ALIGNED = DatasetSpec("synth", True, DIMS, {"text": 12, "audio": 12, "vision": 12})
UNALIGNED = DatasetSpec("synth", False, DIMS, {"text": 12, "audio": 30, "vision": 40})
TINY = dict(d_model=8, num_heads=2, nlevels=1, kernel_l=3, kernel_a=3, kernel_v=3)
TINY_DMD = dict(TINY, gd_size_homo=4, gd_size_hetero=4)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _checkpoint(tmp_path, name, spec, cfg, seed=0):
    torch.manual_seed(seed)
    model = create_model(name, spec, **cfg)
    with torch.no_grad():  # move every parameter off its init (LayerNorms at 1/0, zero biases)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / f"{name}.ckpt"
    save_checkpoint(path, build_checkpoint(model, name, spec, cfg))
    return path, model.eval()


def _compare(onnx_model, model, spec, batch, lens=None, heads=True, seed=5):
    x = example_inputs(spec, onnx_model.inputs + [n for n in ("text", "audio", "vision") if n not in onnx_model.inputs],
                       batch, lens, seed=seed)
    if not spec.aligned:
        x.setdefault("audio_lengths", torch.full((batch,), (lens or spec.seq_lens)["audio"]))
        x.setdefault("vision_lengths", torch.full((batch,), (lens or spec.seq_lens)["vision"]))
    with torch.no_grad():
        ref = model.inference_outputs(x, heads=heads)
    got = onnx_model.inference_outputs(x)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].shape == ref[k].shape, k
        np.testing.assert_allclose(got[k].numpy(), ref[k].numpy(), atol=1e-5, rtol=0, err_msg=k)


def test_inference_outputs_are_the_forward_fields_and_the_plain_path_is_the_fast_one():
    torch.manual_seed(0)
    for name in ("dmd", "dhmd"):
        model = create_model(name, UNALIGNED, **TINY_DMD).eval()
        x = example_inputs(UNALIGNED, ["text", "audio", "vision", "audio_lengths", "vision_lengths"], 3)
        with torch.no_grad():
            full = model(x)
            out = model.inference_outputs(x)
            with plain_encoders(model):
                plain = model.inference_outputs(x)
        assert torch.equal(out["prediction"], full.prediction.view(-1))
        assert torch.equal(out["heads/homo"], full.logits_homo.squeeze(-1).t())
        assert torch.equal(out["heads/hetero"], full.logits_hetero.squeeze(-1).t())
        assert torch.equal(out["edges/homo"], full.edges_homo) and torch.equal(out["edges/hetero"], full.edges_hetero)
        for k in out:
            torch.testing.assert_close(plain[k], out[k], atol=1e-5, rtol=0)


def test_dmd_aligned_with_heads(tmp_path):
    ckpt, model = _checkpoint(tmp_path, "dmd", ALIGNED, TINY_DMD)
    meta = export_onnx(ckpt, tmp_path / "dmd.onnx")
    assert meta["inputs"] == ["text", "audio", "vision"]
    assert meta["outputs"] == ["prediction", "heads_homo", "heads_hetero", "edges_homo", "edges_hetero"]
    assert meta["dynamic_lengths"] is False  # the HomoGD heads flatten T' x d
    assert meta["check"]["max_abs_diff"] <= 1e-5
    onnx_model = OnnxModel(tmp_path / "dmd.onnx", threads=1)
    for batch in (1, 4, 9):  # exported at batch 2
        _compare(onnx_model, model, ALIGNED, batch)
    # the file describes itself: spec, model, label convention
    stored = read_metadata(tmp_path / "dmd.onnx")
    assert stored["spec"] == ALIGNED.to_dict() and stored["model_name"] == "dmd"
    assert stored["model_config"] == TINY_DMD and "[-3, 3]" in stored["label_convention"]
    assert onnx_model.spec == ALIGNED
    with pytest.raises(Exception, match="audio"):  # a fixed axis refuses other lengths
        onnx_model.inference_outputs(example_inputs(ALIGNED, ["text", "audio", "vision"], 1,
                                                    {"text": 12, "audio": 9, "vision": 12}))


def test_dhmd_unaligned_prediction_only_has_dynamic_lengths(tmp_path):
    ckpt, model = _checkpoint(tmp_path, "dhmd", UNALIGNED, dict(TINY_DMD, dict_size=6))
    meta = export_onnx(ckpt, tmp_path / "dhmd.onnx", heads=False)
    assert meta["outputs"] == ["prediction"] and meta["dynamic_lengths"] is True
    onnx_model = OnnxModel(tmp_path / "dhmd.onnx", threads=1)
    for batch, lens in ((1, None), (5, None), (3, {"text": 9, "audio": 21, "vision": 55}),
                        (2, {"text": 20, "audio": 44, "vision": 17})):
        _compare(onnx_model, model, UNALIGNED, batch, lens, heads=False)


def test_mult_unaligned_other_batches_and_lengths(tmp_path):
    ckpt, model = _checkpoint(tmp_path, "mult", UNALIGNED, TINY)
    meta = export_onnx(ckpt, tmp_path / "mult.onnx")
    # the graph keeps the data keys of unaligned batches as inputs (MulT itself reads no lengths)
    assert meta["inputs"] == ["text", "audio", "vision", "audio_lengths", "vision_lengths"]
    assert meta["outputs"] == ["prediction"] and meta["dynamic_lengths"] is True
    onnx_model = OnnxModel(tmp_path / "mult.onnx", threads=1)
    for batch, lens in ((1, None), (4, {"text": 7, "audio": 33, "vision": 25})):
        _compare(onnx_model, model, UNALIGNED, batch, lens)


def test_cli_export_and_one_line_refusals(tmp_path, capsys, monkeypatch):
    ckpt, _ = _checkpoint(tmp_path, "dmd", ALIGNED, TINY_DMD)
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "-o", str(out), "--no-check"]) == 0
    printed = capsys.readouterr().out
    assert "inputs text, audio, vision" in printed and "sequence axes fixed" in printed
    assert json.loads(__import__("onnx").load(str(out)).metadata_props[0].value)["model_name"] == "dmd"
    # not a checkpoint
    (tmp_path / "junk.ckpt").write_text("no")
    assert main(["export", str(tmp_path / "junk.ckpt"), "-o", str(tmp_path / "j.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emodistill export: error:") and err.count("\n") == 1
    assert not (tmp_path / "j.onnx").exists()
    # a model the exporter cannot trace: one line naming the model and the reason, no file left behind

    def refuse(*args, **kwargs):
        raise RuntimeError("Failed to export.\n\n## Exception summary\n\n<class 'torch._dynamo.exc.Unsupported'>: "
                           "data-dependent branching\n\nmore text")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    assert main(["export", str(ckpt), "-o", str(tmp_path / "r.onnx")]) == 2
    err = capsys.readouterr().err
    assert "model 'dmd' cannot be exported to ONNX: torch._dynamo.exc.Unsupported: data-dependent branching" in err
    assert err.count("\n") == 1 and not (tmp_path / "r.onnx").exists()


BASELINES = {  # tiny configs; ef_lstm reads aligned data only
    "late_fusion": (UNALIGNED, dict(hidden=8)),
    "ef_lstm": (ALIGNED, dict(hidden=8, num_layers=2)),
    "lf_dnn": (UNALIGNED, dict(text_hidden=8, audio_hidden=4, vision_hidden=8, text_out=8, post_fusion_dim=8)),
    "tfn": (UNALIGNED, dict(text_hidden=8, audio_hidden=4, vision_hidden=4, text_out=4, post_fusion_dim=8)),
    "lmf": (UNALIGNED, dict(text_hidden=8, audio_hidden=4, vision_hidden=8, text_out=4, rank=2)),
    "self_mm": (UNALIGNED, dict(a_lstm_hidden_size=4, v_lstm_hidden_size=4, audio_out=4, video_out=4,
                                post_fusion_dim=8, post_text_dim=4, post_audio_dim=4, post_video_dim=4)),
    "misa": (UNALIGNED, dict(hidden_size=8, fusion_ff=16)),  # bidirectional: reversed within each length
}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baselines_export_with_per_sample_lengths(tmp_path, name):
    """LSTM baselines stop each sequence at its own length (packed in PyTorch); the graph reads the top
    layer's state at that step instead (MISA's backward directions run over each sequence reversed within
    its length). Checked on a batch whose texts and audio/vision lengths differ."""
    import subprocess
    import sys

    spec, cfg = BASELINES[name]
    ckpt, model = _checkpoint(tmp_path, name, spec, cfg)
    # the CLI, one export per process: a second LSTM export in one process comes out with fixed lengths
    # (state inside torch.export), which the export's own check refuses
    out = tmp_path / f"{name}.onnx"
    done = subprocess.run([sys.executable, "-m", "emodistill", "export", str(ckpt), "-o", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    onnx_model = OnnxModel(tmp_path / f"{name}.onnx", threads=1)
    x = example_inputs(spec, ["text", "audio", "vision"] + ([] if spec.aligned else ["audio_lengths",
                                                                                    "vision_lengths"]), 3, seed=7)
    x["text"][1, 5:] = 0  # a 5-word text beside full ones (the text length is its non-zero rows)
    x["text"][2, 9:] = 0
    if not spec.aligned:
        assert len(set(x["audio_lengths"].tolist())) > 1  # per-sample audio lengths too
    with torch.no_grad():
        ref = model.inference_outputs(x)
    got = onnx_model.inference_outputs(x)
    np.testing.assert_allclose(got["prediction"].numpy(), ref["prediction"].numpy(), atol=1e-5, rtol=0)
    full = {**x, "text": x["text"] + (x["text"] == 0) * 0.5}  # every sequence at its full length
    if not spec.aligned:
        full.update({f"{m}_lengths": torch.full((3,), spec.seq_lens[m]) for m in ("audio", "vision")})
    with torch.no_grad():  # the lengths matter: the test would see a graph that ignored them
        full = model.inference_outputs(full)["prediction"]
    if name != "late_fusion":
        assert not torch.allclose(full[1:], ref["prediction"][1:], atol=1e-5)
