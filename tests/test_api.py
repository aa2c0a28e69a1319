"""The public API at the package root: a user trains, evaluates and predicts with ``import emodistill``
alone (videos -> extract_dataset -> fit -> evaluate -> load_checkpoint / Predictor)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import emodistill as ed

SENTENCES = [
    ("I really love this wonderful movie.", 2.4, "train"),
    ("This was a terrible and boring film.", -2.2, "train"),
    ("What a fantastic performance by everyone.", 2.8, "train"),
    ("I hated every minute of it.", -2.8, "valid"),
    ("Absolutely brilliant and moving.", 2.0, "valid"),
    ("Quite disappointing overall.", -1.6, "test"),
    ("It is fine, nothing special.", 0.2, "test"),
]
TINY_DMD = {"d_model": 8, "num_heads": 2, "nlevels": 1, "gd_size_homo": 8, "gd_size_hetero": 4}


def test_public_names_resolve_from_the_package_root():
    assert set(ed.__all__) == {"__version__", *ed._API}  # one list of public names, resolved lazily
    for name in ed.__all__:
        assert getattr(ed, name) is not None, name
    assert {"load_dataset", "create_model", "list_models", "fit", "fit_seeds", "evaluate", "load_checkpoint",
            "Predictor"} <= set(ed.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ed.nope  # noqa: B018


def test_importing_the_package_stays_light():
    code = "import sys, emodistill; assert 'torch' not in sys.modules, 'torch imported'; print(emodistill.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ed.__version__


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    pytest.importorskip("av", reason="the video extra is part of the test set-up")
    from media import face_frames, speech, write_video

    root = tmp_path_factory.mktemp("api")
    (root / "videos").mkdir()
    rows = ["video,text,label,split"]
    for i, (text, label, split) in enumerate(SENTENCES):
        wav = speech(text)
        n = int(len(wav) / 16000 * 15) + 1
        write_video(root / "videos" / f"clip{i}.mp4", face_frames(n, 192, seed=i), fps=15, audio=wav)
        rows.append(f'clip{i}.mp4,"{text}",{label},{split}')
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_train_evaluate_and_predict_through_the_root_api(videos, tmp_path):
    xcfg = ed.ExtractConfig()
    xcfg.text.model, xcfg.text.max_length, xcfg.vision.fps = "bundled:all-MiniLM-L6-v2", 16, 10
    summary = ed.extract_dataset(videos / "videos", videos / "labels.csv", tmp_path / "clips.pkl", xcfg,
                                 progress=False)
    assert summary.counts == {"train": 3, "valid": 2, "test": 2}

    data = ed.load_dataset(str(tmp_path / "clips.pkl"))
    cfg = ed.RunConfig.from_dict({"model": {"name": "dmd", **TINY_DMD},
                                  "train": {"max_epochs": 2, "batch_size": 2, "update_every": 1},
                                  "data": {"source": str(tmp_path / "clips.pkl")}})
    results = ed.fit(cfg, data, tmp_path / "run", quiet=True)
    assert results["epochs_run"] == 2 and set(results["test"]) >= {"MAE", "Mult_acc_7", "Corr"}

    ev = ed.evaluate(tmp_path / "run" / "best.ckpt", data, split="test")
    pred, label = np.asarray(ev.predictions.prediction), np.asarray(ev.predictions.label)
    np.testing.assert_allclose(label, data.splits["test"].labels[np.asarray(ev.predictions.index)])
    # MAE by its definition (mean absolute error over the split), and the numbers fit() reported
    assert ev.metrics["MAE"] == pytest.approx(float(np.mean(np.abs(pred - label))), abs=1e-6)
    for key, value in results["test"].items():
        assert ev.metrics[key] == pytest.approx(value, abs=1e-6), key

    model, ckpt = ed.load_checkpoint(tmp_path / "run" / "best.ckpt")
    assert ckpt["model_name"] == "dmd" and not model.training
    i = int(np.argmax(np.asarray(ev.predictions.index) == 0))  # the first test clip (clip5)
    with ed.Predictor.from_checkpoint(tmp_path / "run" / "best.ckpt") as predictor:
        out = predictor.predict_video(videos / "videos" / "clip5.mp4", SENTENCES[5][0])
    # the video re-extracted at prediction time gives the score the model gave its data-set row
    assert out["score"] == pytest.approx(float(pred[i]), abs=1e-5)
    assert out["label_2"] == ("positive" if out["score"] >= 0 else "negative")
    assert torch.is_tensor(next(model.parameters()))
