"""Raw video -> extract -> train -> predict, on media the tests build: espeak-ng speech, a real face
photograph (scikit-image's astronaut), muxed into mp4 by PyAV; plus a video without audio, one without a
face, a truncated file and an empty one, each with its documented error."""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np
import pytest
import torch

from emodistill.cli import main
from emodistill.data import load_dataset
from emodistill.data.loader import BatchLoader
from emodistill.extract.errors import ExtractError, MissingExtraError, require
from emodistill.inference.predictor import CheckpointNotPredictable, Predictor
from emodistill.models.registry import load_checkpoint

pytest.importorskip("av", reason="the video extra is part of the test set-up")
from media import speech  # noqa: E402
from video_clips import SENTENCES  # noqa: E402


def test_extracted_pickle_is_mmsa_schema(extracted):
    data = load_dataset(extracted)
    assert [len(data.splits[s]) for s in ("train", "valid", "test")] == [4, 2, 2]
    assert data.train.ids == ["clip0", "clip1", "clip2", "clip3"]  # CSV row order
    assert data.train.raw_text[0] == SENTENCES[0][0]
    assert data.spec.feature_dims["text"] == 384  # all-MiniLM-L6-v2
    assert data.train.text.shape[1] == 16 and data.train.text_bert.shape[1:] == (3, 16)
    assert not data.spec.aligned and data.train.audio_lengths is not None
    record = data.extract_config
    assert record["format"] == "emodistill.extract/1"
    assert record["feature_names"]["vision"][-1] == "face_present"
    # lengths follow the clip (10 video frames/s, 16000/512 audio frames/s), padding is zero
    seconds = len(speech(SENTENCES[0][0])) / 16000
    v_len, a_len = data.train.vision_lengths[0], data.train.audio_lengths[0]
    assert abs(v_len - seconds * 10) <= 2 and abs(a_len - seconds * 16000 / 512) <= 4
    assert np.all(data.train.vision[0, v_len:] == 0) and np.all(data.train.audio[0, a_len:] == 0)
    assert np.all(data.train.vision[0, :v_len, -1] == 1)  # the astronaut's face is in every frame
    # z-scored with train statistics: valid train audio frames have mean 0 and std 1 per column
    frames = np.concatenate([data.train.audio[i, :n] for i, n in enumerate(data.train.audio_lengths)])
    z = [j for j, name in enumerate(record["feature_names"]["audio"]) if name != "voiced"]  # flags stay 0/1
    np.testing.assert_allclose(frames[:, z].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(frames[:, z].std(0), 1, atol=1e-3)
    from emodistill.data.check import describe

    assert "extracted: text bundled:all-MiniLM-L6-v2, audio librosa, vision mediapipe at 10 fps" in describe(data)
    manifest = json.loads((extracted.with_name("mydata.manifest.json")).read_text())
    assert {"versions", "extract", "normalization", "manifest"} <= set(manifest)
    assert manifest["versions"]["mediapipe"] == "0.10.21" or manifest["extract"]["vision"]["backend"] == "haar"


def test_predict_matches_training_features_and_cli(trained, extracted, media_dir, capsys):
    data = load_dataset(extracted)
    model, _ = load_checkpoint(trained)
    batch = next(iter(BatchLoader(data.test, 2, shuffle=False)))
    with torch.no_grad():
        expected = model(batch).prediction.view(-1)
    video = media_dir / "videos" / "clip6.mp4"
    with Predictor.from_checkpoint(trained) as predictor:
        out = predictor.predict_video(video, SENTENCES[6][0])
    # the same video through predict gives the same features, hence the same score, as in the data set
    assert out["score"] == pytest.approx(float(expected[0]), abs=1e-5)
    assert out["label_7"] == int(np.round(np.clip(out["score"], -3, 3)))
    assert out["label_2"] == ("positive" if out["score"] >= 0 else "negative")
    for space in ("homo", "hetero"):
        assert set(out["branches"][space]) == {"text", "audio", "vision"}
        assert sum(out["edges"][space].values()) == pytest.approx(1.0, abs=1e-5)  # one joint softmax
    assert out["frames"]["vision_with_face"] == out["frames"]["vision"]

    capsys.readouterr()
    rc = main(["predict", str(video), "--checkpoint", str(trained), "--transcript", SENTENCES[6][0]])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["score"] == pytest.approx(out["score"], abs=1e-6)


def test_export_then_predict_with_onnx_runtime(trained, media_dir, tmp_path, capsys):
    """The exported file predicts the same video as the checkpoint within 1e-5 (score, heads, edges), alone:
    its metadata carries the extraction record."""
    pytest.importorskip("onnxscript")
    video = media_dir / "videos" / "clip6.mp4"
    onnx_file = tmp_path / "model.onnx"
    assert main(["export", str(trained), "-o", str(onnx_file)]) == 0
    capsys.readouterr()
    with Predictor.from_checkpoint(trained, backend="torch") as predictor:
        ref = predictor.predict_video(video, SENTENCES[6][0])
    assert main(["predict", str(video), "--checkpoint", str(onnx_file), "--transcript", SENTENCES[6][0]]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (ref["backend"], got["backend"]) == ("torch", "onnx")
    assert got["score"] == pytest.approx(ref["score"], abs=1e-5)
    for space in ("homo", "hetero"):
        for key in ("branches", "edges"):
            for name, value in ref[key][space].items():
                assert got[key][space][name] == pytest.approx(value, abs=1e-5), (key, space, name)
    assert got["label_7"] == ref["label_7"] and got["transcript"] == ref["transcript"]
    # --backend onnx on the checkpoint itself: exported once into the cache, then reused
    with Predictor.from_checkpoint(trained, backend="onnx") as predictor:
        assert predictor.predict_video(video, SENTENCES[6][0])["score"] == pytest.approx(ref["score"], abs=1e-5)
        cached = predictor.model.path
    assert cached.parent.name == "onnx" and cached.is_file()
    # an exported file cannot run on PyTorch: one line
    assert main(["predict", str(video), "--checkpoint", str(onnx_file), "--backend", "torch"]) == 2
    err = capsys.readouterr().err
    assert "runs on ONNX Runtime only" in err and err.count("\n") == 1


def test_pipelined_videos_equal_one_by_one_in_input_order(trained, media_dir):
    """predict_videos overlaps decoding/audio/text of the next clips with the face model: same results as
    predict_video one by one, in input order, failures in their own rows."""
    vids, bad = media_dir / "videos", media_dir / "bad"
    videos = [vids / "clip0.mp4", bad / "noface.mp4", vids / "clip1.mp4", bad / "missing.mp4", vids / "clip2.mp4"]
    texts = [SENTENCES[0][0], "Nobody is here.", SENTENCES[1][0], "gone", SENTENCES[2][0]]
    with Predictor.from_checkpoint(trained) as predictor:
        one_by_one = []
        for video, text in zip(videos, texts, strict=True):
            try:
                one_by_one.append(predictor.predict_video(video, text)["score"])
            except Exception as e:
                one_by_one.append(type(e).__name__)
        rows = predictor.predict_videos(videos, texts, ahead=2)
        in_workers = predictor.predict_videos(videos, texts, workers=2)  # two processes, models loaded once each
    assert [r["video"] for r in rows] == [str(v) for v in videos]
    assert [r.get("score", r.get("error", "").split(":")[0]) for r in rows] == one_by_one
    assert "no face detected" in rows[1]["error"] and "file not found" in rows[3]["error"]
    assert [r["video"] for r in in_workers] == [str(v) for v in videos]
    for a, b in zip(rows, in_workers, strict=True):  # other thread counts: equal to float rounding
        assert ("score" in a) == ("score" in b) and a.get("score", 0) == pytest.approx(b.get("score", 0), abs=1e-5)
        assert a.get("error") == b.get("error")


def test_predict_folder_gives_csv_with_error_rows(trained, media_dir, tmp_path, capsys):
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "a.mp4").write_bytes((media_dir / "videos" / "clip0.mp4").read_bytes())
    (folder / "a.txt").write_text(SENTENCES[0][0])
    (folder / "b.mp4").write_bytes((media_dir / "bad" / "noface.mp4").read_bytes())
    (folder / "b.txt").write_text("Nobody is in this picture.")
    capsys.readouterr()
    rc = main(["predict", str(folder), "--checkpoint", str(trained), "-o", str(tmp_path / "p.csv")])
    assert rc == 1  # one video failed
    lines = (tmp_path / "p.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert "score" in header and "edges/homo/V->L" in header and "error" in header
    assert lines[1].startswith(str(folder / "a.mp4")) and "no face detected" in lines[2]


@pytest.mark.parametrize(("name", "words"), [
    ("empty.mp4", ["empty.mp4"]),
    ("truncated.mp4", ["truncated.mp4"]),
    ("noaudio.mp4", ["noaudio.mp4", "audio"]),
    ("noface.mp4", ["noface.mp4", "face"]),
    ("missing.mp4", ["missing.mp4"]),
])
def test_predict_on_a_bad_video_is_one_line(name, words, trained, media_dir, tmp_path, capsys):
    """A single bad video is a user error: exit 2, one line naming the file and the problem, no traceback,
    and no output file left behind."""
    capsys.readouterr()
    out = tmp_path / "p.json"
    rc = main(["predict", str(media_dir / "bad" / name), "--checkpoint", str(trained), "--transcript", "some words",
               "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("emodistill predict: error: ") and all(w in err for w in words), err
    assert not out.exists()


def test_bad_videos_are_reported_not_dropped(media_dir, tmp_path, capsys):
    out = tmp_path / "bad.pkl"
    args = ["extract", str(media_dir / "bad"), "--labels", str(media_dir / "labels_bad.csv"), "-o", str(out),
            "--config", str(media_dir / "extract.yaml"), "--quiet"]
    assert main(args) == 1
    assert not out.exists()  # nothing half-done
    errors = (tmp_path / "bad.errors.csv").read_text().splitlines()
    reasons = {line.split(",")[0]: line for line in errors[1:]}
    assert "no audio stream" in reasons["noaudio"]
    assert "no face detected in any of" in reasons["noface"]
    assert "corrupt" in reasons["truncated"]
    assert "zero-length file" in reasons["empty"]
    capsys.readouterr()
    assert main([*args, "--skip-failures"]) == 0  # resumes from the cache, leaves the 4 failures out
    printed = capsys.readouterr().out
    assert "3 from cache" in printed and "left out 4 failed video(s)" in printed
    data = load_dataset(out)
    assert sum(len(s) for s in data.splits.values()) == 3
    manifest = json.loads((tmp_path / "bad.manifest.json").read_text())
    assert sorted(f["clip_id"] for f in manifest["manifest"]["failed"]) == ["empty", "noaudio", "noface", "truncated"]


def test_workers_give_the_same_data_set(extracted, media_dir, tmp_path):
    out = tmp_path / "par.pkl"
    rc = main(["extract", str(media_dir / "videos"), "--labels", str(media_dir / "labels.csv"), "-o", str(out),
               "--config", str(media_dir / "extract.yaml"), "--workers", "2", "--quiet"])
    assert rc == 0
    with open(extracted, "rb") as f:
        a = pickle.load(f)
    with open(out, "rb") as f:
        b = pickle.load(f)
    for split in ("train", "valid", "test"):
        assert list(a[split]["id"]) == list(b[split]["id"])
        for key in ("text", "text_bert", "audio", "vision", "audio_lengths", "vision_lengths"):
            np.testing.assert_array_equal(a[split][key], b[split][key], err_msg=f"{split}/{key}")


def test_aligned_extraction_uses_timing_files(media_dir, tmp_path):
    vids = tmp_path / "v"
    vids.mkdir()
    rows = ["video,text,label,split"]
    for i, split in enumerate(("train", "valid", "test")):
        (vids / f"c{i}.mp4").write_bytes((media_dir / "videos" / f"clip{i}.mp4").read_bytes())
        rows.append(f'c{i}.mp4,"{SENTENCES[i][0]}",{SENTENCES[i][1]},{split}')
    words = SENTENCES[0][0].split()
    (vids / "c0.json").write_text(json.dumps([{"word": w, "start": 0.3 * k, "end": 0.3 * k + 0.25}
                                              for k, w in enumerate(words)]))
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "aligned.pkl"
    rc = main(["extract", str(vids), "--labels", str(tmp_path / "labels.csv"), "-o", str(out), "--aligned",
               "--config", str(media_dir / "extract.yaml"), "--quiet"])
    assert rc == 0
    data = load_dataset(out)
    assert data.spec.aligned and data.train.audio.shape[1] == data.train.text.shape[1] == 16
    mask = data.train.text_bert[0, 1]  # real tokens
    n = int(mask.sum())
    assert np.all(data.train.audio[0, 0] == 0) and np.all(data.train.audio[0, n - 1] == 0)  # [CLS], [SEP]
    assert np.all(data.train.audio[0, n:] == 0)  # padding
    assert np.abs(data.train.audio[0, 1 : n - 1]).sum(1).min() > 0  # every word token has audio
    manifest = json.loads(out.with_name("aligned.manifest.json").read_text())
    assert manifest["extract"]["aligned"] is True


def test_checkpoint_without_extraction_record_is_refused(mmsa_writer, tmp_path):
    pkl = mmsa_writer(tmp_path / "mosi_like.pkl", dims=(16, 5, 20))
    run = tmp_path / "run"
    assert main(["train", "--model", "late_fusion", "--data", str(pkl), "--epochs", "1", "--quiet",
                 "--run-dir", str(run), "--train.update_every", "1", "--model.hidden", "8"]) == 0
    with pytest.raises(CheckpointNotPredictable, match="cannot be re-extracted"):
        Predictor.from_checkpoint(run / "best.ckpt")


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'emodistill\[video\]'"):
        require("av", "video", "decoding video files")


def test_decode_errors(media_dir):
    from emodistill.extract.decode import decode

    m = decode(media_dir / "videos" / "clip0.mp4", fps=10)
    assert m.frames.ndim == 4 and m.frames.shape[-1] == 3 and m.audio.dtype == np.float32
    slots = np.floor(m.frame_times * 10 + 1e-6)  # one kept frame per 1/10-s slot, the first in it
    assert len(set(slots)) == len(slots) and abs(len(slots) - m.duration * 10) <= 1
    assert m.duration == pytest.approx(len(speech(SENTENCES[0][0])) / 16000, abs=0.15)
    with pytest.raises(ExtractError, match="no audio stream"):
        decode(media_dir / "bad" / "noaudio.mp4", fps=10)


def test_speech_recognition_supplies_missing_transcripts(media_dir, tmp_path):
    from emodistill.extract.clip import ClipExtractor
    from emodistill.extract.config import ExtractConfig

    cfg = ExtractConfig.from_dict({"vision": {"fps": 5}, "asr": {"model": "bundled:whisper-base"},
                                   "text": {"model": "bundled:all-MiniLM-L6-v2", "max_length": 16}})
    with ClipExtractor(cfg) as extractor:
        clip = extractor(media_dir / "videos" / "clip0.mp4", transcript="")  # no transcript in the CSV
        heard = [w.text.strip(".,!?").lower() for w in clip.words]
        said = SENTENCES[0][0].rstrip(".").lower().split()
        assert clip.timing == "asr" and len(set(heard) & set(said)) >= len(said) - 1
        assert all(0 <= w.start <= w.end <= clip.duration + 0.05 for w in clip.words)
        given = extractor(media_dir / "videos" / "clip0.mp4", transcript="my own words")  # asr.use: missing
        assert given.transcript == "my own words" and given.timing == "uniform"
    cfg.asr.model = None
    with ClipExtractor(cfg) as extractor, pytest.raises(ExtractError, match="no transcript: the labels file"):
        extractor(media_dir / "videos" / "clip0.mp4", transcript=" ")


def test_predict_without_transcript_speaks_predicts_language(trained, media_dir, tmp_path, capsys):
    video = tmp_path / "new.mp4"
    video.write_bytes((media_dir / "videos" / "clip6.mp4").read_bytes())
    capsys.readouterr()
    assert main(["predict", str(video), "--checkpoint", str(trained)]) == 2  # no --transcript, no sidecar, no ASR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"emodistill predict: error: {video}: no transcript: ")
    assert "--transcript" in err and "sidecar VIDEO.txt/.srt/.json" in err and "labels file" not in err
    video.with_suffix(".txt").write_text(SENTENCES[6][0])  # the sidecar the message names is then used
    assert main(["predict", str(video), "--checkpoint", str(trained)]) == 0
    assert json.loads(capsys.readouterr().out)["transcript"] == SENTENCES[6][0]



def test_predict_is_quiet(trained, media_dir):
    """MediaPipe / TFLite native log lines are not shown by default (a subprocess: they bypass capsys)."""
    import os
    import subprocess

    drop = ("EMODISTILL_DEBUG", "GLOG_minloglevel", "TF_CPP_MIN_LOG_LEVEL")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    video = media_dir / "videos" / "clip6.mp4"
    out = subprocess.run(
        [sys.executable, "-m", "emodistill", "predict", str(video), "--checkpoint", str(trained), "--transcript",
         SENTENCES[6][0]],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["score"] is not None
    assert "W0000" not in out.stderr and "inference_feedback_manager" not in out.stderr, out.stderr
