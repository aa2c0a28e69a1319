"""Long videos as timelines (``predict --segments``): a generated 80-second video alternates clearly positive
and clearly negative spoken sentences over a face, then speaks over a faceless stretch, then stays silent.

Checked: utterance boundaries from a timing file (exact) and from speech recognition (within 0.6 s), fixed
windows, segments without speech or face reported as such and not scored, CSV and PNG outputs, and that a
model trained on other synthetic videos scores the sentences with the sign of their polarity for most of
them (measured 17 and 18 of 20 in two runs on this machine when the test was written; the bar is "more than half")."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from emodistill.cli import main
from emodistill.extract.asr import Word
from emodistill.inference.predictor import Predictor
from emodistill.inference.timeline import Segment, pauses_of, utterances, windows

pytest.importorskip("av", reason="the video extra is part of the test set-up")
from media import blank_frames, face_frames, speech, write_video  # noqa: E402

SR, FPS, GAP_S = 16000, 15, 1.2
TRAIN = [  # (sentence, label): the model's training clips, none of them in the long video
    ("I love this film so much.", 2.6), ("This movie is awful and dull.", -2.6),
    ("A truly wonderful story.", 2.4), ("I hated the terrible ending.", -2.8),
    ("The actors were brilliant.", 2.2), ("What a boring waste of time.", -2.4),
    ("It made me so happy.", 2.8), ("Sad, bad and painful to watch.", -2.2),
    ("An amazing and beautiful film.", 3.0), ("The worst movie I have seen.", -3.0),
    ("Great music and great acting.", 2.4), ("Ugly, stupid and annoying.", -2.6),
    ("I enjoyed every minute.", 2.2), ("I regret watching this mess.", -2.4),
]
SPLIT = ["train"] * 10 + ["valid"] * 2 + ["test"] * 2
LONG = [  # alternating polarity, +1 positive / -1 negative
    ("This is a fantastic and delightful movie.", 1), ("The plot is horrible and painfully slow.", -1),
    ("I really loved the wonderful characters.", 1), ("Everything about it felt awful.", -1),
    ("A brilliant, joyful experience.", 1), ("I was bored and annoyed the whole time.", -1),
    ("The ending was beautiful.", 1), ("What a terrible, ugly film.", -1),
    ("Amazing performances everywhere.", 1), ("It was a sad and dreadful mess.", -1),
    ("I am so happy I saw it.", 1), ("The dialogue was stupid and dull.", -1),
    ("Great fun for the whole family.", 1), ("I hated the awful music.", -1),
    ("Lovely photography and a great cast.", 1), ("This was the worst evening ever.", -1),
    ("Wonderful, warm and funny.", 1), ("Boring, bad and far too long.", -1),
    ("I would gladly watch it again.", 1), ("A miserable, painful failure.", -1),
]
EXTRACT_YAML = ("vision: {fps: 10}\ntext: {model: 'bundled:all-MiniLM-L6-v2', max_length: 16}\n"
                "asr: {model: 'bundled:whisper-base'}\n")
TINY_DMD = ["--model.d_model", "8", "--model.num_heads", "2", "--model.nlevels", "1", "--model.gd_size_homo", "8",
            "--model.gd_size_hetero", "4"]


def _clip(path, text, seed):
    wav = speech(text)
    return write_video(path, face_frames(int(len(wav) / SR * FPS) + 1, 160, seed=seed), fps=FPS, audio=wav)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """DMD trained (tiny, 30 epochs) on 14 short synthetic videos of other positive and negative sentences."""
    root = tmp_path_factory.mktemp("timeline-train")
    (root / "videos").mkdir()
    rows = ["video,text,label,split"]
    for i, ((text, label), split) in enumerate(zip(TRAIN, SPLIT, strict=True)):
        _clip(root / "videos" / f"t{i}.mp4", text, i)
        rows.append(f'"t{i}.mp4","{text}",{label},{split}')
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    (root / "extract.yaml").write_text(EXTRACT_YAML)
    assert main(["extract", str(root / "videos"), "--labels", str(root / "labels.csv"), "-o", str(root / "d.pkl"),
                 "--config", str(root / "extract.yaml"), "--quiet"]) == 0
    assert main(["train", "--model", "dmd", "--data", str(root / "d.pkl"), "--epochs", "30", "--quiet", "--run-dir",
                 str(root / "run"), "--train.batch_size", "4", "--train.update_every", "1", "--train.lr", "1e-3",
                 "--train.early_stop", "30", *TINY_DMD]) == 0
    return root / "run" / "best.ckpt"


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """(video, timing JSON, true sentence spans): 20 sentences with 1.2 s pauses over a face, one sentence over
    6 s without a face, then 6 s of silence over the face."""
    root = tmp_path_factory.mktemp("timeline-video")
    audio, frames, spans, words, t = [], [], [], [], 0.0
    silence = np.zeros(int(GAP_S * SR), np.float32)
    for text, _ in LONG + [("Nobody can see me speaking now.", 0)]:
        wav = speech(text)
        start, end = t, t + len(wav) / SR
        spans.append((start, end))
        n_words = text.split()
        edges = np.linspace(start, end, len(n_words) + 1)
        words += [{"word": w, "start": float(edges[j]), "end": float(edges[j + 1])} for j, w in enumerate(n_words)]
        audio += [wav, silence]
        t = end + GAP_S
    n_face = int(round(spans[-1][0] * FPS))  # the face disappears when the last sentence starts
    n_speech = int(round(t * FPS))
    n_total = n_speech + int(6.0 * FPS)
    audio.append(np.zeros(int(6.0 * SR), np.float32))
    frames = np.concatenate([face_frames(n_face, 160, seed=1), blank_frames(n_speech - n_face, 160, seed=2),
                             face_frames(n_total - n_speech, 160, seed=3)])
    video = write_video(root / "long.mp4", frames, fps=FPS, audio=np.concatenate(audio))
    (root / "words.json").write_text(json.dumps(words))  # not long.json: that would be the video's sidecar
    return video, root / "words.json", spans


def test_utterances_and_windows_by_hand():
    w = [Word("Hello", 0.0, 0.4), Word("there.", 0.5, 0.9), Word("How", 1.0, 1.2), Word("are", 1.3, 1.5),
         Word("you", 3.0, 3.3), Word("today?", 3.4, 3.9)]
    segs = utterances(w)  # "there." ends one; the 1.5 s pause before "you" ends another
    assert [(s.start, s.end, s.transcript) for s in segs] == [(0.0, 0.9, "Hello there."), (1.0, 1.5, "How are"),
                                                           (3.0, 3.9, "you today?")]
    # speech-recognition timings that stretch "How" over a pause of the audio: split there, end trimmed to it
    stretched = [Word("How", 1.0, 1.9), Word("are", 2.0, 2.3)]
    segs = utterances(stretched, pauses=[(1.25, 1.95)])
    assert [(s.start, s.end, s.transcript) for s in segs] == [(1.0, 1.25, "How"), (2.0, 2.3, "are")]
    sr = 1000
    audio = np.concatenate([np.ones(500), np.zeros(700), np.ones(300), np.zeros(200)]).astype(np.float32)
    assert pauses_of(audio, sr) == [(0.5, 1.2)]  # the 0.2 s tail is too short to count
    win = windows(4.5, 2.0, w)
    assert [(s.start, s.end) for s in win] == [(0.0, 2.0), (2.0, 4.0), (4.0, 4.5)]
    assert [len(s.words) for s in win] == [4, 2, 0]
    assert isinstance(win[0], Segment)
    # 20 ms of container padding after two 2-s windows is no window of its own (< 5 % of one)
    assert [(s.start, s.end) for s in windows(4.02, 2.0, w)] == [(0.0, 2.0), (2.0, 4.02)]
    assert [(s.start, s.end) for s in windows(4.2, 2.0, w)] == [(0.0, 2.0), (2.0, 4.0), (4.0, 4.2)]
    with pytest.raises(ValueError, match="> 0 seconds"):
        windows(4.5, 0, w)


def test_timeline_from_the_timing_file(checkpoint, long_video):
    video, timing, spans = long_video
    with Predictor.from_checkpoint(checkpoint) as predictor:
        tl = predictor.predict_timeline(video, "auto", timing)
    segs = tl["segments"]
    assert tl["duration"] >= 60 and tl["timing"] == "file"
    assert len(segs) == len(LONG) + 1  # one utterance per sentence
    for seg, (start, end) in zip(segs, spans, strict=True):
        assert seg["start"] == pytest.approx(start, abs=0.01) and seg["end"] == pytest.approx(end, abs=0.01)
    assert [s["status"] for s in segs] == ["ok"] * len(LONG) + ["no face"]
    assert "score" not in segs[-1]  # reported, not scored
    agree = sum(np.sign(s["score"]) == polarity for s, (_, polarity) in zip(segs, LONG, strict=False))
    print(f"sign agreement with the sentence polarity: {agree}/{len(LONG)}")
    assert agree > len(LONG) / 2


def test_timeline_from_speech_recognition_and_windows(checkpoint, long_video, tmp_path, capsys):
    video, _, spans = long_video
    out = tmp_path / "tl.csv"
    assert main(["predict", str(video), "--checkpoint", str(checkpoint), "--segments", "auto", "-o", str(out)]) == 0
    tl = json.loads(capsys.readouterr().out)
    assert tl["timing"] == "asr"
    segs = tl["segments"]
    assert abs(len(segs) - len(spans)) <= 2  # Whisper may merge or split a sentence
    # boundaries: at least 80 % of the sentences have an utterance starting and ending within 0.6 s of theirs
    found = sum(any(abs(s["start"] - a) <= 0.6 and abs(s["end"] - b) <= 0.6 for s in segs) for a, b in spans)
    assert found >= 0.8 * len(spans), found
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(segs) and {"start", "end", "status", "score", "homo/text", "transcript"} <= set(rows[0])
    assert out.with_suffix(".png").stat().st_size > 0
    # fixed 5-second windows: the last full window lies in the silence
    with Predictor.from_checkpoint(checkpoint) as predictor:
        tl = predictor.predict_timeline(video, 5.0)
    segs = tl["segments"]
    assert len(segs) == int(np.ceil(tl["duration"] / 5.0))
    assert all(s["end"] - s["start"] == pytest.approx(5.0) for s in segs[:-1])
    assert segs[-1]["status"] == "no speech" and "score" not in segs[-1]


def test_segments_errors_are_one_line(checkpoint, long_video, tmp_path, capsys):
    video, _, _ = long_video
    for value, words in (("soon", "expected 'auto' or a number of seconds"), ("-3", "> 0 seconds")):
        assert main(["predict", str(video), "--checkpoint", str(checkpoint), "--segments", value]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
    assert main(["predict", str(tmp_path), "--checkpoint", str(checkpoint), "--segments", "auto"]) == 2
    assert "expected one video file" in capsys.readouterr().err
