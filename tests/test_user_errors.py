"""No user mistake ends in a traceback: a corpus of malformed inputs, each refused by ``emodistill.cli.main``
with exit status 2 and one line naming the file or option, what was expected and what was found.

Every malformed file is made here, in ``tmp_path``, by :func:`make`; nothing is committed as media. The
corpus runs in-process (fast); :func:`test_the_installed_entry_point_behaves_the_same` runs two cases through
a real ``python -m emodistill`` process.
"""

from __future__ import annotations

import gzip
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_mmsa_pickle

from emodistill.cli import main


def run_cli(argv: list[str]) -> int:
    """``main(argv)``'s status; argparse's own errors exit through SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def assert_refused(argv: list[str], words: list[str], capsys) -> str:
    """Run ``argv``; assert exit 2, no traceback, one line on stderr holding every word of ``words``."""
    capsys.readouterr()
    rc = run_cli(argv)
    err = capsys.readouterr().err
    assert rc == 2, f"{argv}: exit {rc}, stderr {err!r}"
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"{argv}: {len(lines)} lines: {err!r}"
    assert len(lines[0]) <= 400, lines[0]
    for w in words:
        assert w.lower() in lines[0].lower(), f"{w!r} not in {lines[0]!r}"
    return lines[0]


# ---------------------------------------------------------------------------------------- the corpus maker


class _Mkdir:
    """A pickle that, if its code ran, would create a folder: the restricted unpickler must refuse it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def _drop(split: str, key: str | None = None):
    def mutate(d: dict) -> None:
        if key is None:
            del d[split]
        else:
            del d[split][key]
    return mutate


def make(kind: str, tmp: Path) -> Path:
    """Write the malformed input ``kind`` under ``tmp`` and return its path."""
    good = write_mmsa_pickle(tmp / "good.pkl")
    path = tmp / f"{kind}.pkl"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "gzip":
        path.write_bytes(gzip.compress(good.read_bytes()))
    elif kind == "text":
        path.write_text("video_id,clip_id,label\nabc,1,0.5\n")
    elif kind == "malicious":
        path.write_bytes(pickle.dumps({"train": _Mkdir(tmp / "pwned")}))
    elif kind == "list":
        path.write_bytes(pickle.dumps([1, 2, 3]))
    elif kind == "no_test":
        write_mmsa_pickle(path, mutate=_drop("test"))
    elif kind == "no_audio":
        write_mmsa_pickle(path, mutate=_drop("train", "audio"))
    elif kind == "empty_test":
        write_mmsa_pickle(path, n=(12, 4, 0))
    elif kind == "empty_valid":
        write_mmsa_pickle(path, n=(12, 0, 4))
    elif kind == "other_dims":
        write_mmsa_pickle(path, dims=(16, 7, 6))
    elif kind == "empty_dir":
        path = tmp / "empty_dir"
        path.mkdir()
    elif kind == "missing":
        pass
    else:
        raise AssertionError(kind)
    return path


DATA_CASES = {
    # kind: words of the message
    "empty": ["empty.pkl"],
    "truncated": ["truncated.pkl"],
    "gzip": ["gzip.pkl"],
    "text": ["text.pkl"],
    "malicious": ["malicious.pkl", "posix.mkdir"],
    "list": ["list.pkl", "list"],
    "no_test": ["no_test.pkl", "test"],
    "no_audio": ["no_audio.pkl", "train", "audio"],
    "empty_test": ["empty_test.pkl", "split 'test'", "at least one sample", "found 0"],
    "empty_valid": ["empty_valid.pkl", "split 'valid'", "found 0"],
    "empty_dir": ["empty_dir"],
    "missing": ["missing.pkl"],
}


@pytest.mark.parametrize("kind", sorted(DATA_CASES))
def test_data_check_refuses(kind, tmp_path, capsys):
    path = make(kind, tmp_path)
    assert_refused(["data", "check", str(path)], DATA_CASES[kind], capsys)
    assert not (tmp_path / "pwned").exists()  # the refused pickle ran no code


@pytest.mark.parametrize("kind", ["empty", "truncated", "malicious", "no_test", "empty_test"])
def test_train_refuses_bad_data(kind, tmp_path, capsys):
    path = make(kind, tmp_path)
    run = tmp_path / "run"
    assert_refused(["train", "--model", "late_fusion", "--data", str(path), "--run-dir", str(run), "--quiet"],
                   DATA_CASES[kind], capsys)
    assert not run.exists()  # the directory made before the data was read is gone again
    assert not (tmp_path / "pwned").exists()


OPTION_CASES = {
    "lr_abc": (["--train.lr", "abc"], ["--train.lr", "float", "'abc'"]),
    "lr_negative": (["--train.lr", "-1"], ["train.lr", "> 0"]),
    "unknown_field": (["--train.nope", "1"], ["nope", "valid names"]),
    "unknown_section": (["--optim.lr", "1"], ["--optim.lr", "--train.NAME"]),
    "model_field": (["--model.nope", "1"], ["nope"]),
    "no_value": (["--train.lr"], ["--train.lr", "needs a value"]),
    "stray": (["stray"], ["stray"]),
    "epochs_abc": (["--epochs", "abc"], ["--epochs", "int", "'abc'"]),
    "unknown_model": (["--model", "nope"], ["nope", "choose from"]),
    "bad_device": (["--device", "bogus", "--epochs", "1"], ["bogus", "cpu"]),
    "seeds_abc": (["--seeds", "x"], ["--seeds", "'x'"]),
    "resume_missing": (["--resume", "nowhere"], ["nowhere", "run.yaml"]),
    "update_every_too_large": (["--epochs", "1", "--train.update_every", "1000"], ["update_every"]),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_train_refuses_bad_option(case, tmp_path, capsys):
    extra, words = OPTION_CASES[case]
    argv = ["train", "--run-dir", str(tmp_path / "run"), "--quiet", *extra]
    if case == "resume_missing":
        argv = ["train", "--resume", str(tmp_path / "nowhere")]
    elif case != "unknown_model":
        argv[1:1] = ["--model", "late_fusion", "--data", str(write_mmsa_pickle(tmp_path / "d.pkl"))]
    assert_refused(argv, words, capsys)
    assert not (tmp_path / "run").exists()


RECIPES = {
    "syntax": ("model: {name: late_fusion}\ntrain: {lr: [1e-3\n", ["syntax.yaml", "line 3", "YAML"]),
    "section_not_mapping": ("model: late_fusion\n", ["section_not_mapping.yaml", "'model'", "mapping"]),
    "list": ("- model\n- train\n", ["list.yaml", "mapping", "found a list"]),
    "unknown_section": ("model: {name: late_fusion}\noptim: {lr: 1}\n", ["unknown_section.yaml", "optim", "expected"]),
    "unknown_key": ("model: {name: late_fusion}\ntrain: {learning_rate: 1}\n", ["unknown_key.yaml", "learning_rate"]),
    "wrong_type": ("model: {name: late_fusion}\ntrain: {lr: abc}\n", ["lr", "float", "abc"]),
    "unknown_model": ("model: {name: nope}\n", ["nope", "choose from"]),
}


@pytest.mark.parametrize("case", sorted(RECIPES))
def test_train_refuses_bad_recipe(case, tmp_path, capsys):
    text, words = RECIPES[case]
    recipe = tmp_path / f"{case}.yaml"
    recipe.write_text(text)
    assert_refused(["train", "--config", str(recipe), "--data", "synth", "--run-dir", str(tmp_path / "run")],
                   words, capsys)
    assert not (tmp_path / "run").exists()


def test_missing_recipe_and_help_config_of_unknown_model(tmp_path, capsys):
    assert_refused(["train", "--config", str(tmp_path / "none.yaml")], ["none.yaml", "shipped recipes"], capsys)
    assert_refused(["train", "--help-config", "--model", "nope"], ["nope"], capsys)


# ------------------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(best.ckpt of a one-epoch late_fusion run, its data)."""
    tmp = tmp_path_factory.mktemp("trained")
    pkl = write_mmsa_pickle(tmp / "d.pkl", n=(16, 4, 4))
    run = tmp / "run"
    assert main(["train", "--model", "late_fusion", "--data", str(pkl), "--epochs", "1", "--quiet",
                 "--run-dir", str(run), "--train.update_every", "1", "--model.hidden", "8"]) == 0
    return run / "best.ckpt", pkl


def make_checkpoint(kind: str, tmp: Path, good: Path) -> Path:
    path = tmp / f"{kind}.ckpt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"a": 1}))
    elif kind == "official":  # a bare state_dict, as the official DMD code saves
        torch.save({"proj_l.weight": torch.zeros(2, 2)}, path)
    elif kind == "list":
        torch.save([1, 2], path)
    elif kind == "directory":
        path.mkdir()
    elif kind != "missing":
        raise AssertionError(kind)
    return path


CKPT_CASES = {
    "empty": ["empty.ckpt", "checkpoint"],
    "truncated": ["truncated.ckpt", "checkpoint"],
    "text": ["text.ckpt", "checkpoint"],
    "pickle": ["pickle.ckpt", "checkpoint"],
    "official": ["official.ckpt", "import-official"],
    "list": ["list.ckpt", "list"],
    "directory": ["directory.ckpt"],
    "missing": ["missing.ckpt", "not found"],
}


@pytest.mark.parametrize("kind", sorted(CKPT_CASES))
def test_evaluate_refuses_bad_checkpoint(kind, trained, tmp_path, capsys):
    ckpt, pkl = trained
    path = make_checkpoint(kind, tmp_path, ckpt)
    line = assert_refused(["evaluate", str(path), "--data", str(pkl), "--device", "cpu"], CKPT_CASES[kind], capsys)
    assert len(line.removeprefix("emodistill evaluate: error: ")) <= 300


@pytest.mark.parametrize(("kind", "extra", "words"), [
    ("other_dims", [], ["other_dims.pkl"]),
    ("empty_test", [], ["empty_test.pkl", "split 'test'", "found 0"]),
    ("gzip", [], ["gzip.pkl"]),
    ("missing", [], ["missing.pkl"]),
    ("good", ["--split", "dev"], ["--split", "'dev'"]),
    ("good", ["--batch-size", "abc"], ["--batch-size", "'abc'"]),
    ("good", ["--options", "[1, 2]"], ["--options", "mapping"]),
])
def test_evaluate_refuses_bad_data_or_option(kind, extra, words, trained, tmp_path, capsys):
    ckpt, _ = trained
    data = write_mmsa_pickle(tmp_path / "good.pkl", n=(16, 4, 4)) if kind == "good" else make(kind, tmp_path)
    assert_refused(["evaluate", str(ckpt), "--data", str(data), "--device", "cpu", *extra], words, capsys)


@pytest.mark.parametrize("kind", ["empty", "truncated", "official", "missing"])
def test_predict_and_import_official_refuse_bad_checkpoint(kind, trained, tmp_path, capsys):
    path = make_checkpoint(kind, tmp_path, trained[0])
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    assert_refused(["predict", str(video), "--checkpoint", str(path), "--device", "cpu"], [path.name], capsys)
    if kind in ("empty", "truncated", "missing"):
        assert_refused(["import-official", str(path), "--dataset", "mosi", "--setting", "aligned",
                        "-o", str(tmp_path / "out.ckpt")], [path.name], capsys)
        assert not (tmp_path / "out.ckpt").exists()


# ------------------------------------------------------------------------------------ extract labels CSVs

LABELS = {
    "missing_column": ("video,text,split\na.mp4,hello,train\n", ["missing_column.csv", "label"]),
    "unknown_split": ("video,text,label,split\na.mp4,hello,0.5,holdout\n",
                      ["unknown_split.csv", "split", "'holdout'"]),
    "label_not_number": ("video,text,label,split\na.mp4,hello,happy,train\n",
                         ["label_not_number.csv", "label", "'happy'"]),
    "no_rows": ("video,text,label,split\n", ["no_rows.csv", "no rows"]),
}


@pytest.mark.parametrize("case", sorted(LABELS))
def test_extract_refuses_bad_labels(case, tmp_path, capsys):
    text, words = LABELS[case]
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"")
    labels = tmp_path / f"{case}.csv"
    labels.write_text(text)
    out = tmp_path / "out.pkl"
    assert_refused(["extract", str(videos), "--labels", str(labels), "-o", str(out)], words, capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["videos", labels.name])  # no output, no cache


def test_extract_refuses_missing_files_and_bad_options(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    out = str(tmp_path / "out.pkl")
    assert_refused(["extract", str(videos), "--labels", str(tmp_path / "none.csv"), "-o", out],
                   ["none.csv", "not found"], capsys)
    (tmp_path / "l.csv").write_text("video,text,label,split\n")
    assert_refused(["extract", str(tmp_path / "novideos"), "--labels", str(tmp_path / "l.csv"), "-o", out],
                   ["novideos", "not found"], capsys)
    assert_refused(["extract", str(videos), "--labels", str(tmp_path / "l.csv"), "-o", out, "--workers", "x"],
                   ["--workers", "'x'"], capsys)


# ------------------------------------------------------------------------------ compare, ablate, tune


def test_compare_ablate_tune_refuse_bad_input(tmp_path, capsys):
    bad = make("empty", tmp_path)
    good = write_mmsa_pickle(tmp_path / "d.pkl")
    root = tmp_path / "grid"
    assert_refused(["compare", "--models", "late_fusion", "--data", str(bad), "--run-dir", str(root)],
                   ["empty.pkl"], capsys)
    assert not root.exists()
    assert_refused(["compare", "--models", "late_fusion,nope", "--data", str(good), "--run-dir", str(root)],
                   ["--models", "nope", "choose from"], capsys)
    assert not root.exists()
    assert_refused(["ablate", "--data", str(bad), "--run-dir", str(root), "--variants", "dmd"],
                   ["empty.pkl"], capsys)
    assert not root.exists()
    assert_refused(["tune", "--model", "late_fusion", "--data", str(good), "--trials", "abc"],
                   ["--trials", "'abc'"], capsys)
    assert_refused(["tune", "--model", "late_fusion", "--data", str(bad), "--trials", "1", "--run-dir", str(root)],
                   ["empty.pkl"], capsys)
    assert_refused(["tune", "--data", str(good), "--trials", "1", "--run-dir", str(root)], ["--model", "--config"],
                   capsys)
    assert not root.exists()


# ------------------------------------------------------------------------- details, bugs, the real entry


def test_verbose_and_debug_show_the_traceback(tmp_path, capsys, monkeypatch):
    bad = make("empty", tmp_path)
    for argv in (["--verbose", "data", "check", str(bad)], ["data", "check", str(bad), "--verbose"]):
        assert run_cli(argv) == 2
        assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("EMODISTILL_DEBUG", "1")
    assert run_cli(["data", "check", str(bad)]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_long_messages_are_cut_to_one_line(capsys, monkeypatch):
    import emodistill.data

    def fail(*args, **kwargs):
        raise ValueError("x.pkl: " + "very long " * 60 + "\nsecond line\nthird line")

    monkeypatch.setattr(emodistill.data, "load_dataset", fail)
    line = assert_refused(["data", "check", "x.pkl"], ["x.pkl", "--verbose"], capsys)
    assert len(line.removeprefix("emodistill data: error: ")) <= 300


@pytest.mark.parametrize("bug", [AssertionError, TypeError, IndexError, KeyError, RuntimeError])
def test_internal_bugs_keep_their_traceback(bug, monkeypatch):
    import emodistill.data

    def fail(*args, **kwargs):
        raise bug("a bug of ours")

    monkeypatch.setattr(emodistill.data, "load_dataset", fail)
    with pytest.raises(bug, match="a bug of ours"):
        main(["data", "check", "x.pkl"])


def test_the_installed_entry_point_behaves_the_same(tmp_path):
    bad = make("malicious", tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("EMODISTILL_DEBUG", None)
    for argv, word in ((["data", "check", str(bad)], "malicious.pkl"),
                       (["train", "--data", "synth", "--train.lr", "abc"], "--train.lr")):
        out = subprocess.run([sys.executable, "-m", "emodistill", *argv], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=120)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and word in out.stderr
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "runs").exists()


# ------------------------------------- a failed run leaves no half-written output and keeps an existing one


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (temporary files included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_data_synth_failure_keeps_the_existing_file(tmp_path, capsys, monkeypatch):
    import emodistill.data.synth as synth

    out = tmp_path / "synth.pkl"
    out.write_bytes(b"the previous data set")
    before = _snapshot(tmp_path)

    def fail(*args, **kwargs):
        raise ValueError("synth: expected a valid size, found -1")

    monkeypatch.setattr(synth, "generate_synth", fail)
    assert_refused(["data", "synth", "-o", str(out)], ["synth"], capsys)
    assert _snapshot(tmp_path) == before  # nothing half-written beside it


def test_data_synth_into_a_file_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_refused(["data", "synth", "-o", str(blocker / "synth.pkl")], ["file"], capsys)
    assert blocker.read_text() == "x"


def test_evaluate_predict_import_official_failures_keep_the_existing_output(trained, tmp_path, capsys):
    ckpt, pkl = trained
    out = tmp_path / "out.txt"
    out.write_text("previous output\n")
    bad_ckpt = make_checkpoint("truncated", tmp_path, ckpt)
    bad_data = make("empty_test", tmp_path)
    before = _snapshot(tmp_path)
    assert_refused(["evaluate", str(ckpt), "--data", str(bad_data), "--output", str(out)], ["empty_test"], capsys)
    assert_refused(["evaluate", str(bad_ckpt), "--data", str(pkl), "--output", str(out)], ["truncated"], capsys)
    video = tmp_path / "clip.mp4"
    assert_refused(["predict", str(video), "--checkpoint", str(bad_ckpt), "-o", str(out)], ["truncated"], capsys)
    assert_refused(["import-official", str(bad_ckpt), "--dataset", "mosi", "--setting", "aligned", "-o", str(out)],
                   ["truncated"], capsys)
    assert _snapshot(tmp_path) == before


def test_extract_failure_keeps_the_existing_output(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    labels = tmp_path / "labels.csv"
    labels.write_text("video,text,label,split\na.mp4,hello,0.5,holdout\n")
    out = tmp_path / "data.pkl"
    out.write_bytes(b"the previous data set")
    before = _snapshot(tmp_path)
    assert_refused(["extract", str(videos), "--labels", str(labels), "-o", str(out)], ["holdout"], capsys)
    assert _snapshot(tmp_path) == before  # no cache folder, no errors file, no manifest


def test_grid_failures_keep_an_existing_grid_directory(tmp_path, capsys):
    root = tmp_path / "grid"
    root.mkdir()
    (root / "compare.md").write_text("previous table\n")
    bad = make("truncated", tmp_path)
    before = _snapshot(tmp_path)
    assert_refused(["compare", "--models", "late_fusion", "--data", str(bad), "--run-dir", str(root)],
                   ["truncated"], capsys)
    assert_refused(["ablate", "--data", str(bad), "--run-dir", str(root), "--variants", "dmd"], ["truncated"], capsys)
    assert _snapshot(tmp_path) == before


def test_train_keeps_an_existing_run_directory(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text("{}\n")
    pkl = write_mmsa_pickle(tmp_path / "d.pkl")
    before = _snapshot(tmp_path)
    assert_refused(["train", "--model", "late_fusion", "--data", str(pkl), "--run-dir", str(run)],
                   [str(run), "not empty", "--resume"], capsys)
    bad = make("empty_test", tmp_path)
    before = _snapshot(tmp_path)
    assert_refused(["train", "--model", "late_fusion", "--data", str(bad), "--run-dir", str(run)],
                   [str(run), "not empty"], capsys)
    assert _snapshot(tmp_path) == before


def test_a_train_that_fails_before_its_first_epoch_can_simply_be_repeated(tmp_path, capsys, monkeypatch):
    import emodistill.training.fit as fit

    pkl = write_mmsa_pickle(tmp_path / "d.pkl", n=(16, 4, 4))
    run = tmp_path / "run"
    argv = ["train", "--model", "late_fusion", "--data", str(pkl), "--epochs", "1", "--quiet", "--run-dir",
            str(run), "--train.update_every", "1", "--model.hidden", "8"]
    bad = make("empty_test", tmp_path)
    assert_refused([*argv, "--data", str(bad)], ["empty_test"], capsys)  # bad data: after run.yaml was written
    assert not run.exists()

    def fail(*args, **kwargs):  # after config.yaml and metrics.jsonl were written
        raise ValueError("train.batch_size: expected a size the data allows, found 0 batches")

    with monkeypatch.context() as m:
        m.setattr(fit, "train_one_epoch", fail)
        assert_refused(argv, ["batch_size"], capsys)
    assert not run.exists()
    assert main(argv) == 0  # the corrected command, unchanged: no --resume, no new --run-dir
    assert (run / "results.json").is_file()


def test_a_seeded_train_that_fails_keeps_the_finished_seeds(tmp_path, capsys, monkeypatch):
    import emodistill.training.fit as fit

    pkl = write_mmsa_pickle(tmp_path / "d.pkl", n=(16, 4, 4))
    run = tmp_path / "run"
    calls = []
    real = fit.train_one_epoch

    def second_seed_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise ValueError("seed 2: expected data, found none")
        return real(*args, **kwargs)

    monkeypatch.setattr(fit, "train_one_epoch", second_seed_fails)
    capsys.readouterr()
    assert run_cli(["train", "--model", "late_fusion", "--data", str(pkl), "--epochs", "1", "--quiet", "--run-dir",
                    str(run), "--seeds", "1", "2", "--model.hidden", "8", "--train.update_every", "1"]) == 2
    err = capsys.readouterr().err  # the epoch log lines of seed 1, then the error
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "emodistill train: error: seed 2: expected data, found none"
    assert (run / "seed-1" / "best.ckpt").is_file()  # a finished seed is a result: the directory stays
