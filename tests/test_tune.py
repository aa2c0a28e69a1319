"""`emodistill tune`: search-space parsing, the SQLite search end to end, and shared PostgreSQL studies
(two workers; one killed mid-trial) on a real server started from Debian's packages (tests/pg.py)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from pg import REQUIRE_ENV, postgres_server, unavailable_reason
from test_registry import SPEC, TINY

from emodistill.cli import main
from emodistill.experiments.search_space import Param, apply_params, check_model_keys, parse_search_space, suggest
from emodistill.experiments.tune import default_recipe, masked_url, require_optuna, storage_url
from emodistill.models import create_model
from emodistill.training.config import RunConfig, TrainConfig, list_recipes, load_recipe

optuna = pytest.importorskip("optuna")
SRC = Path(__file__).resolve().parents[1] / "src"

RECIPE = """\
model: {name: late_fusion, hidden: 8}
train: {batch_size: 8, update_every: 1, early_stop: 3, num_threads: 1}
search:
  train.lr: {low: 1.0e-4, high: 1.0e-1, log: true}
  model.hidden: {low: 4, high: 16, step: 4}
  model.dropout: {low: 0.0, high: 0.5}
"""


# --- search space --------------------------------------------------------------------------------------------


def test_parse_search_space_kinds():
    space = parse_search_space(yaml.safe_load(RECIPE)["search"] | {"train.batch_size": {"choices": [16, 32]},
                                                                   "train.param_groups.audio.lr": {"low": 1e-4,
                                                                                                   "high": 1e-2}},
                               "r.yaml", model_fields={"hidden", "dropout"})
    assert space == {
        "train.lr": Param("float", 1e-4, 1e-1, None, True),
        "model.hidden": Param("int", 4, 16, 4, False),
        "model.dropout": Param("float", 0.0, 0.5, None, False),  # {low: 0.0} and {low: 0} both give floats
        "train.batch_size": Param("categorical", choices=(16, 32)),
        "train.param_groups.audio.lr": Param("float", 1e-4, 1e-2),
    }
    assert space["train.lr"].describe() == "float [0.0001, 0.1] log"
    assert parse_search_space({"model.x": {"low": 0, "high": 0.5}}, "r")["model.x"].kind == "float"
    assert parse_search_space(None, "r") == {}
    # the recipe form round-trips
    assert parse_search_space({k: p.to_dict() for k, p in space.items()}, "r") == space


@pytest.mark.parametrize("key, spec, message", [
    ("data.source", {"choices": ["a"]}, "r.yaml: search.data.source: unknown section 'data'"),
    ("lr", {"low": 0.1, "high": 1.0}, "search.lr: unknown section 'lr'"),
    ("train.nope", {"low": 0.1, "high": 1.0}, "search.train.nope: 'nope' is not a TrainConfig field"),
    ("train.lr", {"low": 1.0, "high": 1.0}, "search.train.lr: low=1.0 must be < high=1.0"),
    ("train.lr", {"low": 0.0, "high": 1.0, "log": True}, "log scale needs low > 0, got low=0.0"),
    ("train.lr", {"low": 0.1}, "a range needs both 'low' and 'high'"),
    ("train.lr", {"low": "a", "high": 1.0}, "low and high must be numbers"),
    ("train.lr", {"low": 0.1, "high": 1.0, "step": -1}, "'step' must be a positive number"),
    ("train.lr", {"low": 0.1, "high": 1.0, "step": 0.1, "log": True}, "'log' and 'step' cannot be combined"),
    ("train.lr", {"low": 0.1, "high": 1.0, "scale": "log"}, "unknown key(s) ['scale']"),
    ("train.batch_size", {"choices": []}, "'choices' must be a non-empty list"),
    ("train.batch_size", {"choices": [16, 16]}, "has duplicates"),
    ("train.batch_size", {"choices": [[16, 2]]}, "choices must be numbers, strings, booleans or null"),
    ("train.batch_size", {"choices": [16], "low": 1}, "'choices' cannot be combined with ['low']"),
    ("train.lr", [1e-4, 1e-3], "expected a mapping"),
    ("train.param_groups.audio.momentum", {"low": 0.1, "high": 0.9}, "train.param_groups.GROUP.lr"),
    ("train.lr.x", {"low": 0.1, "high": 0.9}, "train.lr is not a mapping"),
    ("model.hiddn", {"low": 4, "high": 8}, "'hiddn' is not a field of the model's config"),
])
def test_search_space_errors_name_the_file_key_and_expectation(key, spec, message):
    with pytest.raises(ValueError) as e:
        parse_search_space({key: spec}, "r.yaml", model_fields={"hidden", "dropout"})
    assert message in str(e.value) and str(e.value).startswith(f"r.yaml: search.{key}")
    assert "\n" not in str(e.value)


def test_check_model_keys_and_apply_params():
    space = parse_search_space({"model.hidden": {"low": 4, "high": 8}}, "r")
    check_model_keys(space, {"hidden"}, "r")
    with pytest.raises(ValueError, match=r"r: search.model.hidden: 'hidden' is not a field .* \['d_model'\]"):
        check_model_keys(space, {"d_model"}, "r")
    base = RunConfig.from_dict(yaml.safe_load(RECIPE)).to_dict()
    out = apply_params(base, {"train.lr": 0.5, "model.hidden": 12, "train.param_groups.audio.lr": 0.01})
    assert out["train"]["lr"] == 0.5 and out["model"]["hidden"] == 12
    assert out["train"]["param_groups"] == {"audio": {"lr": 0.01}}
    assert base["train"]["lr"] == 1e-4 and base["train"]["param_groups"] is None  # the base is not modified


def test_suggest_maps_each_kind_to_optuna():
    space = parse_search_space({"train.lr": {"low": 1e-4, "high": 1e-1, "log": True},
                                "model.hidden": {"low": 4, "high": 16, "step": 4},
                                "train.scheduler": {"choices": ["plateau", "none"]}}, "r")
    fixed = {"train.lr": 0.01, "model.hidden": 8, "train.scheduler": "none"}
    assert suggest(optuna.trial.FixedTrial(fixed), space) == fixed
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    values = suggest(trial, space)
    dist = trial.distributions
    assert dist["train.lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert dist["model.hidden"] == optuna.distributions.IntDistribution(4, 16, step=4)
    assert dist["train.scheduler"] == optuna.distributions.CategoricalDistribution(["plateau", "none"])
    assert values["model.hidden"] in (4, 8, 12, 16) and 1e-4 <= values["train.lr"] <= 1e-1


def test_training_ignores_the_search_section():
    cfg = RunConfig.from_dict(yaml.safe_load(RECIPE), origin="r.yaml")
    assert cfg.model == "late_fusion" and cfg.train.batch_size == 8
    with pytest.raises(ValueError, match="expected model, train, data, search"):
        RunConfig.from_dict({"serach": {}}, origin="r.yaml")


def test_missing_optuna_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    with pytest.raises(ImportError, match=r"emodistill tune needs optuna: pip install 'emodistill\[tune\]'"):
        require_optuna()


def test_storage_urls():
    assert storage_url("postgresql://u:secret@h:5/db") == "postgresql+psycopg://u:secret@h:5/db"
    assert storage_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert storage_url("sqlite:////tmp/s.db") == "sqlite:////tmp/s.db"
    assert masked_url("postgresql+psycopg://u:secret@h:5/db") == "postgresql+psycopg://u:***@h:5/db"


def test_default_recipe_follows_the_data():
    from emodistill.spec import DatasetSpec

    dims, lens = {"text": 768, "audio": 5, "vision": 20}, {"text": 50, "audio": 50, "vision": 50}
    assert default_recipe("dmd", DatasetSpec("mosei", False, dims, lens)) == "dmd_mosei_unaligned"
    assert default_recipe("mult", DatasetSpec("mosei", True, dims, lens)) == "mult_mosei"
    assert default_recipe("lf_dnn", DatasetSpec("custom", True, dims, lens)) == "lf_dnn_mosi"
    with pytest.raises(ValueError, match="no shipped recipe for model 'late_fusion'"):
        default_recipe("late_fusion", DatasetSpec("mosi", True, dims, lens))


@pytest.mark.parametrize("recipe", list_recipes())
def test_every_shipped_recipe_has_a_valid_search_space(recipe):
    """Each key is a field of the model's config (built as in test_registry) or of TrainConfig, and both
    ends of every range give a valid training config and a model that builds (d_model a multiple of
    num_heads...), on the file's precomputed text features instead of BERT."""
    d = load_recipe(recipe)
    name = d["model"]["name"]
    model_fields = set(create_model(name, SPEC, **TINY[name]).config_dict())
    space = parse_search_space(d.get("search"), recipe, model_fields=model_fields)
    assert len(space) >= 5, f"{recipe}: a search space of several parameters is expected"
    assert all(k.split(".")[1] in model_fields | {f.name for f in fields(TrainConfig)} for k in space)
    ends = [{k: (p.choices[end] if p.kind == "categorical" else (p.low, p.high)[end]) for k, p in space.items()}
            for end in (0, -1)]
    every_choice = [ends[0] | {k: c} for k, p in space.items() for c in p.choices[1:-1]]
    for values in ends + every_choice:
        cfg = RunConfig.from_dict(apply_params(d, values), origin=recipe)  # TrainConfig validates its values
        if "text_encoder" in cfg.model_config:
            cfg.model_config.update(text_encoder=None, finetune_text=False)
        create_model(name, SPEC, **cfg.model_config)


def test_the_defaults_of_a_search_are_the_library_s(tmp_path):
    """What `emodistill tune` does without --study, --run-dir, --storage, or with --final-seeds 0."""
    from emodistill.experiments.tune import TuneOptions, default_storage, default_study, default_tune_dir

    cfg = RunConfig.from_dict({"model": {"name": "mult"}, "data": {"source": "/data/aligned_50.pkl"}})
    assert default_study(cfg) == "mult-aligned_50"
    assert default_tune_dir("lab/mult-aligned_50") == Path("runs/tune-lab-mult-aligned_50")
    assert default_storage(tmp_path / "t") == f"sqlite:///{(tmp_path / 't' / 'study.db').resolve()}"
    assert TuneOptions(trials=1, final_seeds=[0]).final_seeds == []
    assert TuneOptions(trials=1).final_seeds == [1111, 1112, 1113, 1114, 1115]
    assert TuneOptions(trials=1, storage="postgres://u@h/db").storage == "postgresql+psycopg://u@h/db"


# --- SQLite, end to end through the CLI ----------------------------------------------------------------------


@pytest.fixture
def tiny(tmp_path, mmsa_writer):
    """A tiny MOSI-like pickle and a late_fusion recipe with a three-parameter search space."""
    (tmp_path / "r.yaml").write_text(RECIPE)
    return tmp_path / "r.yaml", mmsa_writer("d.pkl", n=(16, 6, 6))


def _load(storage: str, study: str):
    return optuna.load_study(study_name=study, storage=storage_url(storage))


def test_sqlite_search_final_stage_and_outputs(tiny, tmp_path, capsys):
    recipe, pkl = tiny
    root = tmp_path / "tune"
    args = ["tune", "--config", str(recipe), "--data", str(pkl), "--trials", "4", "--epochs", "2", "--run-dir",
            str(root), "--final-seeds", "1111", "1112", "--quiet", "--startup-trials", "2"]
    assert main(args) == 0
    assert "## Best trial" in capsys.readouterr().out
    storage = f"sqlite:///{(root / 'study.db').resolve()}"
    study = _load(storage, "late_fusion-d")  # default study name: <model>-<data stem>
    trials = study.get_trials()
    assert len(trials) == 4 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    for t in trials:  # the test split is never read by a trial
        run = Path(t.user_attrs["run_dir"])
        assert run == root / "trials" / str(t.number) and (run / "metrics.jsonl").is_file()
        assert not (run / "test_predictions.csv").exists()
        if t.state.name == "COMPLETE":
            res = json.loads((run / "results.json").read_text())
            assert res["test"] is None and res["valid"]["loss"] == t.value
            assert t.user_attrs["best_epoch"] == res["best_epoch"]
    rows = list(csv.DictReader((root / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3]
    assert [r["state"] for r in rows] == [t.state.name for t in trials]
    best = study.best_trial
    assert float(rows[best.number]["value"]) == best.value and float(rows[best.number]["train.lr"]) == best.params[
        "train.lr"]

    # best.yaml retrains the best trial: same seed, same configuration -> the same validation loss
    best_yaml = yaml.safe_load((root / "best.yaml").read_text())
    assert best_yaml["model"]["hidden"] == best.params["model.hidden"] and best_yaml["train"]["seed"] == 1111
    assert main(["train", "--config", str(root / "best.yaml"), "--run-dir", str(tmp_path / "re"), "--quiet"]) == 0
    again = json.loads((tmp_path / "re" / "results.json").read_text())
    assert again["valid"]["loss"] == pytest.approx(best.value, rel=1e-9, abs=1e-12)

    # final stage: the best config over both seeds, each evaluated once on the test split
    summary = json.loads((root / "final" / "summary.json").read_text())
    assert summary["seeds"] == [1111, 1112]
    per_seed = [json.loads((root / "final" / f"seed-{s}" / "results.json").read_text())["test"]["MAE"]
                for s in (1111, 1112)]
    assert summary["test"]["MAE"]["mean"] == pytest.approx(sum(per_seed) / 2)
    record = _load(storage, "late_fusion-d/final").user_attrs
    assert record["done"] is True and record["best_trial"] == best.number
    md = (root / "tune.md").read_text()
    assert f"## Best trial: {best.number} (valid loss {best.value:.4f}" in md
    assert f"| MAE | {summary['test']['MAE']['mean']:.4f} ± {summary['test']['MAE']['std']:.4f} |" in md
    for png in ("history.png", "importance.png"):
        assert (root / png).stat().st_size > 5000
    plan = yaml.safe_load((root / "tune.yaml").read_text())
    assert plan["study"] == "late_fusion-d" and set(plan["search"]) == {"train.lr", "model.hidden", "model.dropout"}

    # the same command again trains nothing: no new trial, no new run directory, final stage not repeated
    mtime = (root / "final" / "summary.json").stat().st_mtime_ns
    assert main(args) == 0
    assert len(_load(storage, "late_fusion-d").trials) == 4
    assert sorted(p.name for p in (root / "trials").iterdir()) == ["0", "1", "2", "3"]
    assert (root / "final" / "summary.json").stat().st_mtime_ns == mtime
    # another search space in the same directory is refused
    recipe.write_text(RECIPE.replace("high: 16", "high: 32"))
    assert main(args) == 2
    assert "holds another tune (different search)" in capsys.readouterr().err


@pytest.mark.parametrize(("recipe_text", "message"), [
    (RECIPE.replace("model.dropout", "model.dropuot"),
     "search.model.dropuot: 'dropuot' is not a field of the model's config; expected one of ['dropout', 'hidden', "
     "'modalities']"),
    (RECIPE.replace("hidden: 8}", "hidden: 0}"), "LateFusionConfig.hidden=0 must be >= 1"),
])
def test_a_bad_model_key_or_value_is_refused_before_any_trial(tiny, tmp_path, capsys, recipe_text, message):
    recipe, pkl = tiny
    recipe.write_text(recipe_text)
    root = tmp_path / "tune"
    assert main(["tune", "--config", str(recipe), "--data", str(pkl), "--trials", "1", "--run-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emodistill tune: error: ") and message in err and err.count("\n") == 1
    assert not root.exists()


def test_pruning_stops_a_clearly_worse_trial(tiny, tmp_path):
    """Trial 0 (lr 1e-3) completes; trial 1 (lr 3, the loss explodes) is pruned at its first epoch; its run
    stops there. One searched parameter: the importance figure says why it has no bars."""
    recipe, pkl = tiny
    recipe.write_text(RECIPE.split("search:")[0] + "search:\n  train.lr: {choices: [1.0e-3, 3.0]}\n")
    root = tmp_path / "tune"
    root.mkdir()
    storage = f"sqlite:///{root / 'study.db'}"
    pre = optuna.create_study(study_name="prune", storage=storage)
    for lr in (1e-3, 3.0, 1e-3):  # the order is fixed; TPE then samples nothing
        pre.enqueue_trial({"train.lr": lr})
    assert main(["tune", "--config", str(recipe), "--data", str(pkl), "--trials", "3", "--epochs", "3", "--run-dir",
                 str(root), "--storage", storage, "--study", "prune", "--no-final", "--quiet",
                 "--pruner-warmup", "0", "--startup-trials", "1"]) == 0
    trials = _load(storage, "prune").get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert trials[1].user_attrs["pruned_at_epoch"] == 1 and list(trials[1].intermediate_values) == [1]
    assert trials[1].intermediate_values[1] > 100 * trials[0].intermediate_values[1]
    assert len((root / "trials" / "1" / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (root / "trials" / "1" / "results.json").exists()
    assert not (root / "final").exists() and "Not run" in (root / "tune.md").read_text()
    assert (root / "importance.png").is_file()


def test_an_over_budget_trial_is_refused_without_running(tiny, tmp_path, monkeypatch):
    """Two workers asking at the same moment both see room for one more trial; the trial whose rank among
    the non-failed trials is >= N is told FAIL (over_budget) and never trained."""
    from emodistill.data import load_dataset
    from emodistill.experiments import tune

    recipe, pkl = tiny
    opts = tune.TuneOptions(trials=2, study="race", storage=f"sqlite:///{tmp_path / 's.db'}", final_seeds=[],
                            quiet=True, heartbeat=1)
    study = tune.open_study(opts)
    for value in (1.0, 2.0):  # the budget is already used up by other workers' trials...
        study.add_trial(optuna.create_trial(value=value))
    real, stale = tune.trial_counts, [{}]  # ...but this worker's first count does not see them yet
    monkeypatch.setattr(tune, "trial_counts", lambda s: stale.pop() if stale else real(s))
    base = RunConfig.from_dict(yaml.safe_load(RECIPE)).to_dict()
    space = parse_search_space(yaml.safe_load(RECIPE)["search"], "r")
    assert tune.search(study, base, space, load_dataset(str(pkl)), tmp_path / "run", opts) == 0
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert trials[2].user_attrs["over_budget"] is True and "run_dir" not in trials[2].user_attrs
    assert not (tmp_path / "run").exists()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test asks the dead trial itself
def test_a_trial_orphaned_before_its_first_heartbeat_is_failed_not_waited_for(tiny, tmp_path):
    """A worker killed between ask() and its first heartbeat leaves a RUNNING trial that Optuna never ages;
    a live worker fails it after the grace period (it has no parameters, so nothing is lost) and the budget
    is still met."""
    from emodistill.data import load_dataset
    from emodistill.experiments import tune

    recipe, pkl = tiny
    opts = tune.TuneOptions(trials=2, study="orphan", storage=f"sqlite:///{tmp_path / 's.db'}", final_seeds=[],
                            quiet=True, heartbeat=1, poll=0.2)
    study = tune.open_study(opts)
    orphan = study.ask()  # the dead worker's trial: RUNNING, no heartbeat, no worker attribute
    recipe_d = yaml.safe_load(RECIPE)
    base = RunConfig.from_dict({**recipe_d, "train": {**recipe_d["train"], "max_epochs": 1}}).to_dict()
    space = parse_search_space(recipe_d["search"], "r")
    data, ran = load_dataset(str(pkl)), []
    worker = threading.Thread(target=lambda: ran.append(tune.search(study, base, space, data, tmp_path / "run", opts)),
                              daemon=True)  # a regression would wait forever: fail instead of hanging the suite
    worker.start()
    worker.join(timeout=90)
    assert not worker.is_alive(), "the worker is still waiting for the orphaned trial"
    assert ran == [2]
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states[orphan.number] == "FAIL"
    assert sorted(v for k, v in states.items() if k != orphan.number) == ["COMPLETE", "COMPLETE"]


def test_model_recipe_no_final_then_final_after_a_dead_claimant(tmp_path, mmsa_writer, capsys):
    """--model uses the model's shipped recipe; --no-final leaves the final stage to a later run; a claim whose
    worker died on this machine is taken over, a live one is respected."""
    pkl = mmsa_writer("d.pkl", n=(16, 6, 6))
    root = tmp_path / "tune"
    args = ["tune", "--model", "lf_dnn", "--data", str(pkl), "--trials", "2", "--epochs", "1", "--run-dir", str(root),
            "--quiet", "--train.batch_size", "8", "--train.num_threads", "1"]
    assert main([*args, "--no-final"]) == 0
    assert "recipe: lf_dnn_mosi" in capsys.readouterr().out
    plan = yaml.safe_load((root / "tune.yaml").read_text())
    assert set(plan["search"]) == set(load_recipe("lf_dnn_mosi")["search"])
    assert plan["config"]["train"]["early_stop"] == 8 and plan["config"]["train"]["batch_size"] == 8  # recipe+override
    assert plan["config"]["data"]["dataset"] is None  # the recipe's data section (mosi) is not forced on the file
    assert not (root / "final").exists()
    storage = f"sqlite:///{(root / 'study.db').resolve()}"
    claim = optuna.create_study(study_name="lf_dnn-d/final", storage=storage)
    claim.set_user_attr("hostname", os.uname().nodename)
    claim.set_user_attr("pid", 1)  # alive: its claim stands
    assert main([*args, "--final-seeds", "1111"]) == 0
    assert not (root / "final").exists() and "Claimed by" in (root / "tune.md").read_text()
    gone = subprocess.Popen(["true"])
    gone.wait()
    claim.set_user_attr("pid", gone.pid)  # died before finishing: the next worker takes over
    assert main([*args, "--final-seeds", "1111"]) == 0
    assert (root / "final" / "summary.json").is_file()
    record = _load(storage, "lf_dnn-d/final#2").user_attrs
    assert record["done"] is True and record["seeds"] == [1111] and record["pid"] == os.getpid()
    assert len(_load(storage, "lf_dnn-d").trials) == 2  # no trial was added by the later runs


# --- PostgreSQL: several workers on one study ----------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url():
    reason = unavailable_reason()
    if reason:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    with postgres_server() as url:
        yield url


def _worker(recipe: Path, pkl: Path, run_dir: Path, url: str, study: str, trials: int, *extra: str):
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "emodistill", "tune", "--config", str(recipe), "--data", str(pkl), "--trials",
           str(trials), "--storage", url, "--study", study, "--run-dir", str(run_dir), "--final-seeds", "1111",
           "--quiet", "--startup-trials", "2", "--pruner-warmup", "100", *extra]
    log = (run_dir.parent / f"{run_dir.name}.log").open("w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def _check_study(url: str, study_name: str, n: int, run_dirs: list[Path]):
    """Exactly n finished trials, none running or waiting, each parameter set run once unless it is the
    retry of a failed trial, the final stage run by exactly one worker."""
    study = _load(url, study_name)
    trials = study.get_trials()
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == n
    assert "RUNNING" not in states and "WAITING" not in states
    assert len({t.number for t in trials}) == len(trials)
    for t in trials:
        if t.user_attrs.get("over_budget"):  # refused after a simultaneous ask: never run
            assert t.state.name == "FAIL" and "run_dir" not in t.user_attrs
    ran = [t for t in trials if "run_dir" in t.user_attrs]
    by_params: dict[tuple, list] = {}
    for t in ran:
        by_params.setdefault(tuple(sorted(t.params.items())), []).append(t)
    for group in by_params.values():
        originals = [t for t in group if "failed_trial" not in t.system_attrs]
        assert len(originals) == 1, [t.number for t in group]
        assert all(t.system_attrs.get("failed_trial") == originals[0].number for t in group[1:])
    finals = [d for d in run_dirs if (d / "final").exists()]
    assert len(finals) == 1 and (finals[0] / "final" / "summary.json").is_file()
    assert _load(url, f"{study_name}/final").user_attrs["done"] is True
    return study


def test_postgres_two_workers_share_one_study(postgres_url, tiny, tmp_path):
    recipe, pkl = tiny
    dirs = [tmp_path / "w0", tmp_path / "w1"]
    procs = [_worker(recipe, pkl, d, postgres_url, "shared", 8, "--epochs", "2") for d in dirs]
    for p, d in zip(procs, dirs, strict=True):
        assert p.wait(timeout=240) == 0, (d.parent / f"{d.name}.log").read_text()[-3000:]
    study = _check_study(postgres_url, "shared", 8, dirs)
    workers = {t.user_attrs["pid"] for t in study.trials if "pid" in t.user_attrs}
    assert workers == {p.pid for p in procs}  # both workers ran trials of the one study
    assert "FAIL" not in [t.state.name for t in study.trials if not t.user_attrs.get("over_budget")]
    for d in dirs:  # each worker's tables describe the whole study
        assert len(list(csv.DictReader((d / "trials.csv").open()))) == len(study.trials)


def test_postgres_killed_worker_trial_is_retried(postgres_url, tiny, tmp_path):
    recipe, pkl = tiny
    dirs = [tmp_path / "victim", tmp_path / "survivor"]
    extra = ("--epochs", "8", "--heartbeat", "1", "--train.early_stop", "8")  # grace period: 3 heartbeats
    victim, survivor = (_worker(recipe, pkl, d, postgres_url, "kill", 4, *extra) for d in dirs)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline:
        assert victim.poll() is None, (tmp_path / "victim.log").read_text()[-3000:]
        try:
            running = _load(postgres_url, "kill").get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:  # the study is not created yet
            running = []
        mine = [t for t in running if t.user_attrs.get("pid") == victim.pid]
        if mine:
            victim.send_signal(signal.SIGKILL)
            killed = mine[0]
        else:
            time.sleep(0.05)
    assert killed is not None, "the victim never started a trial"
    victim.wait(timeout=30)
    assert survivor.wait(timeout=240) == 0, (tmp_path / "survivor.log").read_text()[-3000:]
    study = _check_study(postgres_url, "kill", 4, [dirs[1]])
    trials = study.get_trials()
    assert trials[killed.number].state.name == "FAIL"
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].params == killed.params
    assert retries[0].state.name == "COMPLETE" and retries[0].user_attrs["pid"] == survivor.pid
    assert study.best_value == min(t.value for t in trials if t.state.name == "COMPLETE")
