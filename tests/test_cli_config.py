"""Typed configuration on the command line and in Python: overrides converted to each field's type,
``--help-config``, ``make_config``, the run and grid directories, and ``evaluate()`` against the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml

from emodistill.cli import VERBS, build_parser, main
from emodistill.experiments.grid import open_grid
from emodistill.inference.evaluation import evaluate
from emodistill.models import list_models
from emodistill.models.dmd.config import DMDConfig
from emodistill.models.mult import MulTConfig
from emodistill.models.registry import load_checkpoint, model_config_class, model_fields
from emodistill.training.config import TrainConfig, list_recipes, load_recipe, make_config
from emodistill.training.fields import convert, field_docs
from emodistill.training.run_dir import create_run_dir, read_run_dir

TINY = ["--quiet", "--train.batch_size", "8", "--train.update_every", "1", "--model.hidden", "8"]


# --- conversion of one value ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "tp", "expected"), [
    ("3e-4", float, 3e-4),
    ("1", float, 1.0),
    ("5", int, 5),
    ("true", bool, True),
    ("No", bool, False),
    ("0", bool, False),
    ("null", int | None, None),
    ("none", str | None, None),
    ("7", int | None, 7),
    ("0.5", float | None, 0.5),
    ("per_sample", str, "per_sample"),
    ("30", str, "30"),  # a str field takes the text as it is
    ("[rec, ort]", tuple[str, ...], ("rec", "ort")),
    ("[1, 2.5]", tuple[float, float], (1.0, 2.5)),
    ("[homo]", tuple[str, ...] | list[str], ("homo",)),
    ("[1, 2]", list[int], [1, 2]),
    ("{split: fold, fold: 3}", dict[str, Any], {"split": "fold", "fold": 3}),
    ("{audio: {lr: 1}}", dict[str, dict[str, float]] | None, {"audio": {"lr": 1.0}}),
])
def test_command_line_text_is_converted_to_the_field_type(text, tp, expected):
    value = convert(text, tp, "--x.y", text=True)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(("text", "tp", "expected_type"), [
    ("abc", float, "float"),
    ("2.5", int, "int"),
    ("maybe", bool, "bool"),
    ("[1, 2, 3]", tuple[float, float], "tuple[float, float]"),
    ("rec", tuple[str, ...], "tuple[str, ...]"),
    ("[a, b]", dict[str, int], "dict[str, int]"),
    ("x", int | None, "int | None"),
])
def test_a_value_of_the_wrong_type_is_one_line_naming_the_option_type_and_value(text, tp, expected_type):
    with pytest.raises(ValueError) as e:
        convert(text, tp, "--train.opt", text=True)
    assert str(e.value) == f"--train.opt: expected {expected_type}, found {text!r}"


def test_recipe_values_are_checked_not_parsed_as_text():
    assert convert(1, float, "r") == 1.0 and type(convert(1, float, "r")) is float
    assert convert("1e-4", float, "r") == 1e-4  # YAML reads 1e-4 (no dot) as a string
    assert convert([0, 1], tuple[float, ...], "r") == (0.0, 1.0)
    for value, tp in ((True, int), (1, bool), (5, str), ("[a]", tuple[str, ...]), (None, int)):
        with pytest.raises(ValueError, match="^r: expected"):
            convert(value, tp, "r")


# --- make_config --------------------------------------------------------------------------------------

def test_make_config_converts_overrides_to_each_field_type():
    cfg = make_config("dmd_synth_demo", overrides=[
        ("train.lr", "3e-4"), ("train.max_epochs", "5"), ("train.deterministic", "false"),
        ("train.grad_clip_value", "null"), ("model.disabled_losses", "[rec, ort]"), ("model.text_encoder", "none"),
        ("model.d_model", "30"), ("data.options", "{}"), ("data.strict_hash", "yes"),
    ])
    assert cfg.train.lr == 3e-4 and type(cfg.train.lr) is float
    assert cfg.train.max_epochs == 5 and type(cfg.train.max_epochs) is int
    assert cfg.train.deterministic is False and cfg.train.grad_clip_value is None
    assert cfg.model_config["disabled_losses"] == ("rec", "ort") and cfg.model_config["text_encoder"] is None
    assert cfg.model_config["d_model"] == 30 and cfg.data.strict_hash is True
    # a mapping works too, and Python values are checked rather than parsed
    cfg = make_config(model="late_fusion", data="synth", overrides={"model.hidden": 8, "train.lr": 1},
                      max_epochs=2, device="cpu")
    assert cfg.model == "late_fusion" and cfg.model_config == {"hidden": 8} and cfg.train.lr == 1.0
    assert (cfg.train.max_epochs, cfg.train.device, cfg.data.source) == (2, "cpu", "synth")


def test_make_config_names_the_bad_option():
    with pytest.raises(ValueError, match=r"^--train\.lr: expected float, found 'abc'$"):
        make_config(overrides=[("train.lr", "abc")])
    with pytest.raises(ValueError, match=r"^--model\.d: model dmd has no field 'd'; valid names: .*\bd_model\b"):
        make_config(overrides=[("model.d", "30")])
    with pytest.raises(ValueError, match=r"^--data\.sauce: DataConfig has no field 'sauce'; valid names: dataset, "):
        make_config(overrides=[("data.sauce", "x")])
    with pytest.raises(ValueError, match="expected --model.NAME, --train.NAME or --data.NAME"):
        make_config(overrides=[("optim.lr", "1")])
    # a builder keyword that is not a config field is an option too; its type is checked
    assert make_config(model="ef_lstm", overrides=[("model.text_encoder", "null")]).model_config["text_encoder"] is None
    with pytest.raises(ValueError, match=r"^--model\.hidden: expected int, found '8.5'$"):
        make_config(model="ef_lstm", overrides=[("model.hidden", "8.5")])


def test_field_models_widens_the_valid_model_fields():
    with pytest.raises(ValueError, match="model dmd has no field 'dict_size'"):
        make_config(overrides=[("model.dict_size", "16")])
    cfg = make_config(overrides=[("model.dict_size", "16")], field_models=["dhmd"])
    assert cfg.model == "dmd" and cfg.model_config["dict_size"] == 16


def test_recipe_values_are_validated(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model: {name: late_fusion, hidden: 8}\ntrain: {lr: abc}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: train\.lr: expected float, found 'abc'"):
        make_config(str(recipe))
    recipe.write_text("model: {name: late_fusion, hiden: 8}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: model: \['hiden'\] not field\(s\) of model 'late_fusion'"):
        make_config(str(recipe))
    recipe.write_text("model: {name: late_fusion, hidden: 8}\ntrain: {lr: 1e-3}\n")  # YAML: a string
    assert make_config(str(recipe)).train.lr == 1e-3


def test_a_recipe_extends_another_key_by_key(tmp_path):
    """``extends``: every section starts from the parent's; a key the child sets replaces the parent's whole
    value (a mapping too), the others stay; a relative path is read next to the child; a cycle or a missing
    parent is one line naming the file."""
    (tmp_path / "base.yaml").write_text(
        "model: {name: late_fusion, hidden: 8, dropout: 0.1}\n"
        "train: {lr: 1.0e-3, batch_size: 16, param_groups: {other: {lr: 1.0e-3}, audio: {lr: 5.0e-3}}}\n"
        "search: {train.lr: {low: 1.0e-4, high: 1.0e-2}}\n")
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("extends: ../base.yaml\nmodel: {hidden: 16}\ntrain: {param_groups: {other: {lr: 2.0e-3}}}\n"
                     "data: {dataset: mosi}\n")
    assert load_recipe(str(child)) == {
        "model": {"name": "late_fusion", "hidden": 16, "dropout": 0.1},
        "train": {"lr": 1.0e-3, "batch_size": 16, "param_groups": {"other": {"lr": 2.0e-3}}},
        "data": {"dataset": "mosi"},
        "search": {"train.lr": {"low": 1.0e-4, "high": 1.0e-2}},
    }
    cfg = make_config(str(child), overrides=[("model.dropout", "0.3")])
    assert (cfg.model, cfg.model_config["hidden"], cfg.model_config["dropout"]) == ("late_fusion", 16, 0.3)

    (tmp_path / "base.yaml").write_text("extends: sub/child.yaml\nmodel: {name: late_fusion}\n")
    with pytest.raises(ValueError, match=r"base.yaml: extends 'child.yaml' makes a cycle: "
                                         r"child.yaml -> base.yaml -> child.yaml$"):
        load_recipe(str(child))
    child.write_text("extends: ../nope.yaml\n")
    with pytest.raises(ValueError, match=r"child.yaml: extends '../nope.yaml', which is neither a file next to it "
                                         r"nor a shipped recipe \(dhmd_synth_tuned, "):
        load_recipe(str(child))
    child.write_text("extend: misa_mosi\nmodel: {hidden: 8}\n")  # a typo is named, not a traceback
    with pytest.raises(ValueError, match=r"child.yaml: unknown top-level key\(s\) \['extend'\]; expected some "
                                         r"of model, train, data, search, extends$"):
        load_recipe(str(child))


def test_extends_looks_next_to_the_file_then_in_the_shipped_recipes_never_in_the_working_directory(
        tmp_path, monkeypatch):
    (tmp_path / "misa_mosi").write_text("model: {name: tfn}\n")  # must not shadow the shipped parent
    (tmp_path / "base.yaml").write_text("model: {name: late_fusion, hidden: 8}\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "a.yaml").write_text("extends: misa_mosi\n")
    assert load_recipe(str(tmp_path / "r" / "a.yaml"))["model"]["name"] == "misa"
    (tmp_path / "r" / "b.yaml").write_text("extends: base\n")  # ./base.yaml is not next to r/b.yaml
    with pytest.raises(ValueError, match="extends 'base', which is neither a file next to it"):
        load_recipe(str(tmp_path / "r" / "b.yaml"))
    (tmp_path / "r" / "base.yaml").write_text("model: {name: late_fusion, hidden: 4}\n")
    assert load_recipe(str(tmp_path / "r" / "b.yaml"))["model"] == {"name": "late_fusion", "hidden": 4}


def test_a_null_section_drops_the_parent_s_and_another_model_starts_from_its_own_settings(tmp_path):
    child = tmp_path / "c.yaml"
    child.write_text("extends: misa_mosi\nsearch: null\n")
    d = load_recipe(str(child))
    assert d["search"] == {} and d["model"]["name"] == "misa" and d["train"]["lr"] == 1.0e-4
    child.write_text("extends: misa_mosi\nmodel: {name: late_fusion, hidden: 8}\n")
    d = load_recipe(str(child))
    assert d["model"] == {"name": "late_fusion", "hidden": 8} and d["train"]["update_every"] == 2
    assert make_config(str(child)).model_config == {"hidden": 8}


@pytest.mark.parametrize("name, parent, changed, search", [
    ("misa_synth", "misa_mosi", {"text_encoder": None, "finetune_text": False},
     {"train.lr": {"low": 2.0e-5, "high": 5.0e-3, "log": True}}),
    ("self_mm_synth", "self_mm_mosi", {"text_encoder": None, "finetune_text": False, "text_pooling": "mean"}, {}),
])
def test_the_synthetic_variants_of_mmsa_recipes_change_only_the_text_input(name, parent, changed, search):
    """MMSA's published settings on data without words: only how text is read differs from the parent (and,
    for tuning MISA without BERT, the upper end of its learning-rate range)."""
    child, base = load_recipe(name), load_recipe(parent)
    assert {k: v for k, v in child["model"].items() if base["model"].get(k) != v} == changed
    assert child["train"] == base["train"]
    assert {k: v for k, v in child["search"].items() if base["search"].get(k) != v} == search


@pytest.mark.parametrize("name", list_recipes())
def test_every_shipped_recipe_passes_the_typed_checks(name):
    cfg = make_config(name)
    assert cfg.model in list_models()


@pytest.mark.parametrize("name", list(list_models()))
def test_every_model_is_registered_with_its_config(name):
    config = model_config_class(name)
    assert config is not None and set(model_fields(name)) >= {f for f in config.__dataclass_fields__}


# --- --help-config and --help --------------------------------------------------------------------------

def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(("model", "config", "field", "default", "phrase"), [
    ("dmd", DMDConfig, "d_model", "50", "Model width ``d``"),
    ("mult", MulTConfig, "kernel_a", "5", "Temporal Conv1d kernel of the audio projection"),
])
def test_help_config_lists_every_field_with_type_default_and_docstring(model, config, field, default, phrase, capsys):
    args = ["train", "--help-config"] + (["--model", model] if model != "dmd" else [])
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"  {field}: int = {default}\n" in out
    flat = _flat(out)
    assert phrase in flat and _flat(field_docs(config)[field]) in flat
    assert all(f"  {f}: " in out for f in config.__dataclass_fields__)
    # the training and data fields follow, e.g. the learning rate and the strict hash switch
    assert "  lr: float = 0.0001\n" in out and _flat(field_docs(TrainConfig)["lr"]) in flat
    assert "  strict_hash: bool = false\n" in out


def test_help_config_shows_builder_keywords_and_refuses_an_unknown_model(capsys):
    assert main(["train", "--help-config", "--model", "ef_lstm"]) == 0
    assert "  text_encoder: str | None = null\n" in capsys.readouterr().out
    assert main(["train", "--help-config", "--model", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_help_config_takes_the_model_of_the_recipe(capsys):
    assert main(["train", "--config", "mult_mosi", "--help-config"]) == 0
    assert "options of model mult (MulTConfig)" in capsys.readouterr().out
    assert main(["train", "--config", "mult_mosi", "--model", "dmd", "--help-config"]) == 0
    assert "options of model dmd (DMDConfig)" in capsys.readouterr().out


@pytest.mark.parametrize("verb", [v for v in VERBS if v != "data"] + ["data check", "data synth"])
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([*verb.split(), "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: emodistill {verb}" in out
    assert "%%" not in out  # argparse formats help= strings with %, but not descriptions


def _help(verb: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    return _flat(capsys.readouterr().out)


def test_help_texts_say_what_each_verb_does_without_an_option(capsys):
    assert "95% t-interval" in _help("ablate", capsys) and "95% t-interval" in _help("compare", capsys)
    train = _help("train", capsys)
    assert "registered model name (see `emodistill models`); default: the recipe's, else dmd" in train
    assert "(--model, else the model of --config, else dmd)" in train
    tune = _help("tune", capsys)
    assert "else dmd" not in tune and "one of --model and --config is required" in tune


@pytest.mark.parametrize("argv", [["evaluate", "best.ckpt", "--data", "d.pkl"], ["data", "check", "d.pkl"]])
def test_data_reading_options_are_the_same_everywhere(argv):
    args = build_parser().parse_args([*argv, "--dataset", "mosi", "--options", "{fold: 3}", "--strict-hash"])
    assert (args.dataset, args.options, args.strict_hash) == ("mosi", {"fold": 3}, True)
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--options", "fold"])  # not a mapping


def test_batch_size_defaults_to_64_where_a_model_runs_over_a_split(capsys):
    parser = build_parser()
    assert parser.parse_args(["evaluate", "best.ckpt", "--data", "d.pkl"]).batch_size == 64
    assert parser.parse_args(["report", "runs/x"]).batch_size == 64
    assert parser.parse_args(["report", "runs/x", "--batch-size", "8"]).batch_size == 8
    assert "test batch size for the model pass (default 64)" in _help("report", capsys)


def test_help_stays_light_and_python_m_works():
    code = ("import sys\nfrom emodistill.cli import build_parser\nbuild_parser().format_help()\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-m", "emodistill", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "emodistill train" in out.stdout


# --- the command line's errors -------------------------------------------------------------------------

def test_a_missing_report_extra_is_one_line(monkeypatch, tmp_path, capsys):
    import emodistill.report

    def write_reports(*args, **kwargs):
        raise ImportError("the report needs matplotlib: pip install 'emodistill[report]'")

    monkeypatch.setattr(emodistill.report, "write_reports", write_reports, raising=False)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "emodistill report: error: the report needs matplotlib: pip install 'emodistill[report]'\n"


def test_wrong_override_type_is_a_one_line_error(tmp_path, capsys):
    missing = str(tmp_path / "missing.pkl")  # a broken check fails fast instead of training
    assert main(["train", "--data", missing, "--run-dir", str(tmp_path / "r"), "--train.lr", "abc"]) == 2
    err = capsys.readouterr().err
    assert err == "emodistill train: error: --train.lr: expected float, found 'abc'\n"
    assert not (tmp_path / "r").exists()


def test_unknown_model_option_lists_the_valid_names(tmp_path, capsys):
    assert main(["train", "--model", "late_fusion", "--data", str(tmp_path / "missing.pkl"), "--run-dir",
                 str(tmp_path / "r"), "--model.d", "30"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--model.d: model late_fusion has no field 'd'; valid names: dropout, hidden, modalities" in err


def test_a_stray_argument_is_refused(tmp_path, capsys):
    missing = str(tmp_path / "missing.pkl")  # a broken check fails fast instead of training
    assert main(["train", "--data", missing, "--run-dir", str(tmp_path / "r"), "--train.lr"]) == 2
    assert "override --train.lr needs a value" in capsys.readouterr().err
    assert main(["ablate", "stray"]) == 2
    assert "unrecognised argument 'stray'" in capsys.readouterr().err


# --- run and grid directories --------------------------------------------------------------------------

def test_run_dir_is_created_once_and_resumed_from_run_yaml(tmp_path):
    cfg = make_config(model="late_fusion", overrides={"train.lr": 0.01})
    root = create_run_dir(cfg, tmp_path / "run", seeds=[1, 2])
    saved = yaml.safe_load((root / "run.yaml").read_text())
    assert saved["seeds"] == [1, 2] and saved["config"]["train"]["lr"] == 0.01
    with pytest.raises(FileExistsError, match="run directory is not empty"):
        create_run_dir(cfg, root)
    again, seeds = read_run_dir(root)
    assert again == cfg and seeds == [1, 2]
    with pytest.raises(FileNotFoundError, match="run.yaml not found"):
        read_run_dir(tmp_path)


def test_grid_dir_continues_the_same_plan_and_refuses_another(tmp_path):
    cfg = make_config(model="late_fusion")
    root, continuing = open_grid("ablation", cfg, [1, 2], tmp_path / "g", variants=["dmd"])
    assert not continuing and yaml.safe_load((root / "ablation.yaml").read_text())["variants"] == ["dmd"]
    assert open_grid("ablation", cfg, [1, 2], root, variants=["dmd"]) == (root, True)
    with pytest.raises(ValueError, match="holds another ablation \\(different seeds\\)"):
        open_grid("ablation", cfg, [1], root, variants=["dmd"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    with pytest.raises(FileExistsError, match="not empty and holds no compare.yaml"):
        open_grid("compare", cfg, [1], tmp_path / "other")


# --- evaluate() is what `emodistill evaluate` prints ----------------------------------------------------

def test_evaluate_from_python_matches_the_command_line(mmsa_writer, tmp_path, capsys):
    from emodistill.data import load_dataset

    pkl = mmsa_writer("d.pkl", n=(16, 6, 6))
    run = tmp_path / "run"
    assert main(["train", "--model", "late_fusion", "--data", str(pkl), "--epochs", "2", "--run-dir", str(run),
                 *TINY]) == 0
    capsys.readouterr()
    ckpt, csv_path = run / "best.ckpt", tmp_path / "pred.csv"
    assert main(["evaluate", str(ckpt), "--data", str(pkl), "--json", "--device", "cpu", "--split", "valid",
                 "--output", str(csv_path)]) == 0
    printed = json.loads(capsys.readouterr().out.split("predictions:")[0])

    ev = evaluate(ckpt, str(pkl), "valid")
    assert ev.metrics == printed and "loss" in ev.metrics and "Mult_acc_7" in ev.metrics
    assert ev.model_name == "late_fusion" and ev.split == "valid" and len(ev.ids) == len(ev.samples) == 6
    assert ev.predictions_csv() == csv_path.read_text()
    # a loaded data set and an already loaded model give the same numbers
    assert evaluate(load_checkpoint(ckpt), load_dataset(str(pkl)), "valid").metrics == printed
    with pytest.raises(ValueError, match="split 'dev'"):
        evaluate(ckpt, str(pkl), "dev")


def test_resume_takes_the_configuration_and_seeds_of_run_yaml(mmsa_writer, tmp_path, capsys):
    pkl = mmsa_writer("d.pkl", n=(16, 6, 6))
    run = tmp_path / "run"
    assert main(["train", "--model", "late_fusion", "--data", str(pkl), "--epochs", "1", "--run-dir", str(run),
                 "--seeds", "7", *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--model", "dmd"]) == 2
    assert "--resume takes the run's own configuration" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--quiet"]) == 0  # finished: nothing is retrained
    out = capsys.readouterr().out
    assert "Test metrics (late_fusion, seed 7, best epoch 1 of 1)" in out and f"run directory: {run}" in out


def test_a_runs_config_yaml_trains_again_as_a_recipe(mmsa_writer, tmp_path, capsys):
    """A finished run's config.yaml (recipe sections plus seed, spec, environment, data_provenance) is a
    recipe: training from it gives the same configuration and, on the same machine, the same test metrics."""
    pkl = mmsa_writer("d.pkl", n=(16, 6, 6))
    first, again = tmp_path / "first", tmp_path / "again"
    assert main(["train", "--model", "late_fusion", "--data", str(pkl), "--epochs", "2", "--run-dir", str(first),
                 "--seeds", "7", *TINY]) == 0
    recorded = yaml.safe_load((first / "config.yaml").read_text())
    assert {"seed", "spec", "environment", "data_provenance"} <= set(recorded)
    assert make_config(first / "config.yaml") == make_config({k: recorded[k] for k in ("model", "train", "data")})
    assert main(["train", "--config", str(first / "config.yaml"), "--run-dir", str(again), "--quiet"]) == 0
    capsys.readouterr()
    results = [json.loads((run / "results.json").read_text()) for run in (first, again)]
    assert results[1]["seed"] == 7 and results[1]["model"] == "late_fusion"
    assert results[0]["test"] == results[1]["test"]
