"""`emodistill report`: every figure a valid PNG, only existing files linked, graceful degradation, and the
numbers behind the edge matrix and the confusion matrix checked against hand computation."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import write_mmsa_pickle

from emodistill.cli import main
from emodistill.data import load_dataset
from emodistill.data.loader import BatchLoader
from emodistill.models.registry import load_checkpoint
from emodistill.report import analysis as A
from emodistill.report import figures as F
from emodistill.report import write_report, write_reports
from emodistill.training.config import RunConfig
from emodistill.training.fit import fit

pytest.importorskip("matplotlib")  # the `report` extra
pytest.importorskip("sklearn")
Image = pytest.importorskip("PIL.Image")  # installed with matplotlib

N = (24, 8, 30)  # train, valid, test: 30 test samples x 3 modalities = 90 t-SNE points
TINY_DMD = {"name": "dmd", "d_model": 8, "num_heads": 2, "nlevels": 1, "kernel_l": 3, "kernel_a": 3,
            "kernel_v": 3, "gd_size_homo": 4, "gd_size_hetero": 4}
DMD_FIGURES = {"curves.png", "edge_matrix.png", "edges_epochs.png", "embedding_homo.png", "embedding_hetero.png",
               "confusion.png", "predictions.png"}
RUN_FILE_FIGURES = {"curves.png", "edge_matrix.png", "edges_epochs.png", "confusion.png", "predictions.png"}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny tensors: a second intra-op thread only adds synchronisation (measured 4-10x slower on a busy
    2-core machine). Restored afterwards for the rest of the session."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def dmd_run(tmp_path_factory) -> Path:
    """A finished 2-epoch tiny DMD run whose config points at its (existing) data file."""
    root = tmp_path_factory.mktemp("report")
    pkl = write_mmsa_pickle(root / "tiny.pkl", n=N, aligned=False, lens=(8, 10, 12))
    train = {"batch_size": 8, "eval_batch_size": 16, "update_every": 1, "max_epochs": 2, "device": "cpu"}
    cfg = RunConfig.from_dict({"model": TINY_DMD, "train": train, "data": {"source": str(pkl)}})
    fit(cfg, load_dataset(str(pkl)), root / "run", quiet=True)
    return root / "run"


@pytest.fixture(scope="module")
def dmd_report(dmd_run, tmp_path_factory) -> Path:
    return write_report(dmd_run, tmp_path_factory.mktemp("out") / "rep", max_points=90)


def _copy_run(run: Path, dst: Path, **config_changes) -> Path:
    """Copy a run directory (without its report) and update ``config.yaml`` sections."""
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("report"))
    cfg = yaml.safe_load((dst / "config.yaml").read_text())
    for section, values in config_changes.items():
        cfg[section].update(values)
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dst


def _check_page(out: Path) -> tuple[set[str], str]:
    """Every link of index.html exists (images are valid PNGs with alt text); return the image names."""
    page = (out / "index.html").read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    imgs = re.findall(r"<img ([^>]*)>", page)
    srcs = set()
    for tag in imgs:
        src = re.search(r'src="([^"]+)"', tag).group(1)
        assert re.search(r'alt="[^"]{10,}"', tag), tag
        assert "/" not in src and (out / src).is_file(), src  # relative, in the report folder
        with Image.open(out / src) as im:
            assert im.format == "PNG"
            im.verify()
        srcs.add(src)
    ids = set(re.findall(r'id="?([\w-]+)', page))
    for href in re.findall(r'href="([^"]+)"', page):
        assert href.startswith("#") and href[1:] in ids, href
    assert {p.name for p in out.iterdir()} == srcs | {"index.html", "report_data.json"}  # nothing stray
    return srcs, page


def test_dmd_report_has_every_figure_and_only_existing_links(dmd_report):
    srcs, page = _check_page(dmd_report)
    assert srcs == DMD_FIGURES  # no activations_*.png for DMD ...
    assert "has no dictionary" in page  # ... and the page says why
    assert "Mult_acc_7" in page and "best epoch" in page
    assert not [p for p in dmd_report.parent.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_edge_matrix_is_the_test_mean_of_interpret_edges(dmd_run, dmd_report):
    drawn = json.loads((dmd_report / "report_data.json").read_text())["edge_matrix"]
    assert drawn["rows"] == "teacher" and drawn["modalities"] == ["L", "V", "A"]
    model, _ = load_checkpoint(dmd_run / "best.ckpt")
    cfg = yaml.safe_load((dmd_run / "config.yaml").read_text())
    test = load_dataset(cfg["data"]["source"]).splits["test"]
    batch = next(iter(BatchLoader(test, len(test), shuffle=False)))  # the whole split in one batch
    with torch.no_grad():
        named = model.interpret(batch)
    pos = {"L": 0, "V": 1, "A": 2}
    for space in ("homo", "hetero"):
        mean = named[f"edges/{space}"].double().mean(dim=0)  # (6,)
        m = drawn["matrix"][space]
        for x, name in enumerate(("V->L", "A->L", "L->V", "A->V", "L->A", "V->A")):
            teacher, student = name.split("->")
            assert m[pos[teacher]][pos[student]] == pytest.approx(float(mean[x]), abs=1e-6), (space, name)
        assert [m[i][i] for i in range(3)] == [None, None, None]


def test_edge_matrix_layout_by_hand():
    # edge order V->L, A->L, L->V, A->V, L->A, V->A; rows teacher L, V, A; columns student L, V, A
    m = A.edge_matrix([1, 2, 3, 4, 5, 6])
    expected = np.array([[np.nan, 3, 5], [1, np.nan, 6], [2, 4, np.nan]])
    np.testing.assert_array_equal(m, expected)
    with pytest.raises(ValueError, match="6 edge weights"):
        A.edge_matrix([0.5, 0.5])


def test_class_bins_and_confusion_by_hand():
    y = np.array([-3.4, -0.5, 0.5, 1.5, 2.5, 0.2])
    p = np.array([-2.6, 0.4, -0.6, 2.49, 3.9, -1.6])
    t_idx, names = A.label_classes(y, "regression", "mosi")
    p_idx, _ = A.prediction_classes(p, "regression", "mosi")
    # np.round ties to even: -0.5 -> 0, 0.5 -> 0, 1.5 -> 2, 2.5 -> 2; clip first: -3.4 -> -3, 3.9 -> 3
    assert names == ("-3", "-2", "-1", "0", "1", "2", "3")
    assert (t_idx - 3).tolist() == [-3, 0, 0, 2, 2, 0]
    assert (p_idx - 3).tolist() == [-3, 0, -1, 2, 3, -2]
    expected = np.zeros((7, 7), dtype=int)
    for t, q in [(-3, -3), (0, 0), (0, -1), (2, 2), (2, 3), (0, -2)]:
        expected[t + 3, q + 3] += 1
    np.testing.assert_array_equal(A.confusion_matrix(t_idx, p_idx, 7), expected)
    # SIMS: 5 bins (lo, hi] with edges -0.7, -0.1, 0.1, 0.7 after clipping to [-1, 1]
    s_idx, s_names = A.label_classes(np.array([-1.2, -0.7, -0.69, 0.1, 0.11, 1.0]), "regression", "sims")
    assert len(s_names) == 5 and s_idx.tolist() == [0, 0, 1, 2, 3, 4]
    # binary: labels 0/1, predictions are logits (> 0 is class 1)
    b_t, _ = A.label_classes(np.array([0.0, 1.0, 1.0, 0.0]), "binary", "mosi")
    b_p, _ = A.prediction_classes(np.array([-0.2, 0.3, -1.0, 0.0]), "binary", "mosi")
    np.testing.assert_array_equal(A.confusion_matrix(b_t, b_p, 2), [[2, 0], [1, 1]])


def _write_predictions(run: Path, labels, preds) -> None:
    with open(run / "test_predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", "prediction"])
        w.writerows([f"c{i}", y, p] for i, (y, p) in enumerate(zip(labels, preds, strict=True)))


def test_missing_data_source_still_draws_the_run_file_figures(dmd_run, tmp_path):
    run = _copy_run(dmd_run, tmp_path / "run", data={"source": str(tmp_path / "gone.pkl")})
    _write_predictions(run, [-3.4, -0.5, 0.5, 1.5, 2.5, 0.2], [-2.6, 0.4, -0.6, 2.49, 3.9, -1.6])
    out = write_report(run)  # default location RUN_DIR/report
    assert out == run / "report"
    srcs, page = _check_page(out)
    assert srcs == RUN_FILE_FIGURES
    assert "gone.pkl" in page and "could not be loaded" in page
    data = json.loads((out / "report_data.json").read_text())
    # Without the test pass the edge matrix falls back to the selected epoch's validation means.
    best = json.loads((run / "results.json").read_text())["best_epoch"]
    record = next(json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()
                  if json.loads(x)["epoch"] == best)
    assert "validation" in data["edge_matrix"]["source"]
    assert data["edge_matrix"]["matrix"]["homo"][1][0] == pytest.approx(record["edges"]["homo"][0])  # V->L
    # the confusion counts are the hand-computed case of test_class_bins_and_confusion_by_hand
    counts = np.array(data["confusion"]["counts"])
    assert counts.sum() == 6 and counts[3, 3] == counts[3, 2] == counts[3, 1] == counts[0, 0] == 1
    assert counts[5, 5] == counts[5, 6] == 1


def test_report_is_written_atomically(dmd_run, tmp_path, monkeypatch):
    run = _copy_run(dmd_run, tmp_path / "run", data={"source": str(tmp_path / "gone.pkl")})
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not an emodistill report"):
        write_report(run, tmp_path / "notes")
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["mine.txt"]
    (run / "report").mkdir()
    (run / "report" / "index.html").write_text("an older report")
    (run / "report" / "stale.png").write_bytes(b"x")

    def boom(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(F, "scatter_figure", boom)
    with pytest.raises(RuntimeError, match="drawing failed"):
        write_report(run)  # fails half-way through: the older report stays as it was, no temp folder is left
    assert (run / "report" / "index.html").read_text() == "an older report"
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    write_report(run)  # replaces the older report as a whole (stale files go)
    _check_page(run / "report")


def test_binary_run_gets_a_2x2_matrix_and_a_logit_strip(dmd_run, tmp_path):
    run = _copy_run(dmd_run, tmp_path / "run", data={"source": str(tmp_path / "gone.pkl")},
                    spec={"task": "binary", "label_range": [0.0, 1.0]})
    _write_predictions(run, [0, 1, 1, 0], [-0.2, 0.3, -1.0, 0.0])
    out = write_report(run, tmp_path / "rep")
    srcs, page = _check_page(out)
    assert "predictions.png" in srcs and "Strip plot of test logits" in page
    assert json.loads((out / "report_data.json").read_text())["confusion"]["counts"] == [[2, 0], [1, 1]]


def test_dhmd_run_gets_dictionary_heatmaps(tmp_path):
    pkl = write_mmsa_pickle(tmp_path / "tiny.pkl", n=(16, 6, 12), aligned=False, lens=(8, 10, 12))
    train = {"batch_size": 8, "eval_batch_size": 16, "update_every": 1, "max_epochs": 1, "device": "cpu"}
    model = {**TINY_DMD, "name": "dhmd", "dict_size": 7}
    cfg = RunConfig.from_dict({"model": model, "train": train, "data": {"source": str(pkl)}})
    fit(cfg, load_dataset(str(pkl)), tmp_path / "run", quiet=True)
    out = write_report(tmp_path / "run", tmp_path / "rep", max_points=36)
    srcs, page = _check_page(out)
    assert {"activations_homo.png", "activations_hetero.png"} <= srcs
    assert "has no dictionary" not in page
    acts = json.loads((out / "report_data.json").read_text())["activations"]
    assert acts["homo"] == {"l": [7], "v": [7], "a": [7]} and acts["hetero"] == acts["homo"]


def test_seed_root_gets_one_report_per_seed_and_the_cli(dmd_run, tmp_path, capsys):
    root = tmp_path / "seeds"
    for seed in ("seed-1", "seed-2"):
        _copy_run(dmd_run, root / seed, data={"source": str(tmp_path / "gone.pkl")})
    with pytest.raises(ValueError, match="multi-seed root"):
        write_report(root)
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        write_reports(tmp_path)
    assert main(["report", str(root), "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    for seed in ("seed-1", "seed-2"):
        assert str(tmp_path / "out" / seed / "index.html") in printed
        _check_page(tmp_path / "out" / seed)


def test_dhmd_run_on_planted_concepts_gets_recovery_table_and_concept_heatmaps(tmp_path):
    from emodistill.data.synth_concepts import write_synth_concepts

    pkl = write_synth_concepts(tmp_path / "concepts.pkl", n_train=16, n_valid=6, n_test=12, text_len=8,
                               text_dim=12, aligned=True)
    train = {"batch_size": 8, "eval_batch_size": 16, "update_every": 1, "max_epochs": 1, "device": "cpu"}
    model = {**TINY_DMD, "name": "dhmd", "dict_size": 7, "dict_usage_weight": 0.1}
    cfg = RunConfig.from_dict({"model": model, "train": train, "data": {"source": str(pkl)}})
    fit(cfg, load_dataset(str(pkl)), tmp_path / "run", quiet=True)
    out = write_report(tmp_path / "run", tmp_path / "rep", max_points=36)
    srcs, page = _check_page(out)
    assert {"concepts_homo.png", "concepts_hetero.png"} <= srcs
    assert "concept NMI" in page and "cross-modal agreement" in page
    # the report's measures (recomputed from best.ckpt) are the ones the run recorded on its test split
    shown = json.loads((out / "report_data.json").read_text())["dictionary"]
    recorded = json.loads((tmp_path / "run" / "results.json").read_text())["dictionary"]
    for space in ("homo", "hetero"):
        assert shown[space]["agreement"] == pytest.approx(recorded[space]["agreement"])
        for m in ("l", "v", "a"):
            for k in ("perplexity", "atoms_used", "nmi", "purity"):
                assert shown[space][m][k] == pytest.approx(recorded[space][m][k], rel=1e-6), (space, m, k)
            assert 1.0 <= shown[space][m]["perplexity"] <= 7.0 and 0.0 <= shown[space][m]["nmi"] <= 1.0
