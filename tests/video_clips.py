"""The small video data set several test modules share: eight clips of espeak-ng speech over a real face
photograph (scikit-image's astronaut), a folder of bad videos, their extraction and a tiny DMD trained on it.
The session fixtures of conftest.py (``media_dir``, ``extracted``, ``trained``) build each once."""

from __future__ import annotations

from pathlib import Path

from media import blank_frames, face_frames, speech, write_video

from emodistill.cli import main

SENTENCES = [
    ("I really love this wonderful movie.", 2.4),
    ("This was a terrible and boring film.", -2.2),
    ("It is fine, nothing special.", 0.2),
    ("What a fantastic performance by everyone.", 2.8),
    ("I hated every minute of it.", -2.8),
    ("The plot was okay but slow.", -0.4),
    ("Absolutely brilliant and moving.", 2.0),
    ("Quite disappointing overall.", -1.6),
]
SPLIT = ["train", "train", "train", "train", "valid", "valid", "test", "test"]
EXTRACT_YAML = "vision: {fps: 10}\ntext: {model: 'bundled:all-MiniLM-L6-v2', max_length: 16}\n"
TINY_DMD = ["--model.d_model", "8", "--model.num_heads", "2", "--model.nlevels", "1", "--model.gd_size_homo", "8",
            "--model.gd_size_hetero", "4"]


def clip_video(path, text, seed, *, frames=True, audio=True, face=True):
    wav = speech(text)
    n = int(len(wav) / 16000 * 15) + 1  # video as long as the speech, 15 fps
    pics = (face_frames(n, 192, seed=seed) if face else blank_frames(n, 192, seed=seed)) if frames else None
    return write_video(path, pics, fps=15, audio=wav if audio else None)


def build_media(root: Path) -> Path:
    """The clips, labels.csv, the bad/ folder with labels_bad.csv, and extract.yaml under ``root``."""
    vids = root / "videos"
    vids.mkdir()
    rows = ["video,text,label,split"]
    for i, ((text, label), split) in enumerate(zip(SENTENCES, SPLIT, strict=True)):
        clip_video(vids / f"clip{i}.mp4", text, i)
        rows.append(f'clip{i}.mp4,"{text}",{label},{split}')
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    bad = root / "bad"
    bad.mkdir()
    clip_video(bad / "noaudio.mp4", "No sound here.", 20, audio=False)
    clip_video(bad / "noface.mp4", "Nobody is in this picture.", 21, face=False)
    good = clip_video(bad / "good.mp4", SENTENCES[0][0], 22)
    (bad / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    (bad / "empty.mp4").write_bytes(b"")
    for i in range(3):  # enough good clips for three splits
        (bad / f"ok{i}.mp4").write_bytes(good.read_bytes())
    bad_rows = ["video,text,label,split", "ok0.mp4,fine,1,train", "ok1.mp4,fine,1,valid", "ok2.mp4,fine,1,test"]
    bad_rows += [f"{n}.mp4,some words,0,train" for n in ("noaudio", "noface", "truncated", "empty")]
    (root / "labels_bad.csv").write_text("\n".join(bad_rows) + "\n")
    (root / "extract.yaml").write_text(EXTRACT_YAML)
    return root


def extract_media(media_dir: Path) -> Path:
    """``emodistill extract`` of the clips: ``media_dir/mydata.pkl``."""
    out = media_dir / "mydata.pkl"
    rc = main(["extract", str(media_dir / "videos"), "--labels", str(media_dir / "labels.csv"), "-o", str(out),
               "--config", str(media_dir / "extract.yaml"), "--quiet"])
    assert rc == 0
    return out


def train_tiny(extracted: Path, media_dir: Path) -> Path:
    """A tiny DMD, 2 epochs on the extracted clips: its ``best.ckpt``."""
    run = media_dir / "run"
    rc = main(["train", "--model", "dmd", "--data", str(extracted), "--epochs", "2", "--quiet", "--run-dir", str(run),
               "--train.batch_size", "4", "--train.update_every", "1", *TINY_DMD])
    assert rc == 0
    return run / "best.ckpt"
