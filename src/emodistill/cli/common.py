"""What the verbs share: parent parsers that declare each common option once, and the ``--section.NAME VALUE``
overrides. Light on purpose (argparse and yaml only), so that ``emodistill --help`` imports no torch.

Each ``*_option`` function returns a new parent parser (``add_help=False``) holding one option; a verb
lists the ones it takes in its module's ``PARENTS``. An option whose default or meaning differs between
verbs takes it as an argument (e.g. ``device_option("cpu")``), so the flag, type and wording stay in one
place.
"""

from __future__ import annotations

import argparse

DATA_SOURCES = ("'synth', 'synth-unaligned', 'synth-concepts', 'synth-concepts-unaligned', an MMSA .pkl path "
                "or a UR-FUNNY/MUStARD directory")
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def data_option(*, required: bool = False, help: str | None = None) -> argparse.ArgumentParser:
    """``--data SOURCE``: the data set (``data.source``)."""
    p = _parent()
    if help is None:  # the training verbs set reader options with the --data.options override
        help = DATA_SOURCES if required else (f"{DATA_SOURCES} (reader options: --data.options "
                                              "'{split: fold, fold: 3}'); default synth")
    p.add_argument("--data", required=required, help=help)
    return p


def config_option() -> argparse.ArgumentParser:
    """``--config RECIPE``: a recipe file or shipped recipe name."""
    p = _parent()
    p.add_argument("--config", help="recipe: a YAML path or a shipped recipe name (see `emodistill recipes`)")
    return p


def model_option(help: str = "default: the recipe's, else dmd") -> argparse.ArgumentParser:
    """``--model NAME``: a registered model; ``help`` says what happens without it."""
    p = _parent()
    p.add_argument("--model", help=f"registered model name (see `emodistill models`); {help}")
    return p


def epochs_option() -> argparse.ArgumentParser:
    """``--epochs N``: ``train.max_epochs``."""
    p = _parent()
    p.add_argument("--epochs", type=int, help="upper bound on epochs (train.max_epochs)")
    return p


def device_option(default: str | None = None, devices: str = DEVICE_CHOICES) -> argparse.ArgumentParser:
    """``--device``: where the model runs; None: ``train.device`` of the configuration. ``devices`` lists the
    accepted values in the help text (the value itself is checked where the device is opened)."""
    p = _parent()
    where = f"default {default}" if default else "train.device"
    p.add_argument("--device", default=default, help=f"{devices} ({where})")
    return p


def run_dir_option(default: str) -> argparse.ArgumentParser:
    """``--run-dir DIR``: the output directory; ``default`` describes the one chosen without it."""
    p = _parent()
    p.add_argument("--run-dir", help=f"output directory (default {default})")
    return p


def reader_options(options_default: str | None = None) -> list[argparse.ArgumentParser]:
    """``--dataset``, ``--options`` and ``--strict-hash``: how a verb that reads a data set given by path
    reads it (``emodistill.data.load_dataset``); ``options_default`` describes the reader options used
    without ``--options``."""
    dataset, options, strict = _parent(), _parent(), _parent()
    dataset.add_argument("--dataset", help="force the data-set family (mosi, mosei, sims, urfunny, mustard)")
    default = f" (default: {options_default})" if options_default else ""
    options.add_argument("--options", type=yaml_mapping, help="reader options of a directory data set as YAML, "
                         f"e.g. '{{split: fold, fold: 3}}'{default}")
    strict.add_argument("--strict-hash", action="store_true", help="fail on a SHA-256 mismatch of a published file")
    return [dataset, options, strict]


def batch_size_option(help: str = "mini-batch size of the model pass") -> argparse.ArgumentParser:
    """``--batch-size N`` (default 64) of a verb that runs a trained model over a split."""
    p = _parent()
    p.add_argument("--batch-size", type=int, default=64, help=f"{help} (default 64)")
    return p


def quiet_option(help: str = "no progress bars; one log line per epoch") -> argparse.ArgumentParser:
    """``--quiet``: no progress bars."""
    p = _parent()
    p.add_argument("--quiet", action="store_true", help=help)
    return p


def _jobs(text: str) -> int:
    """argparse type of ``--jobs``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, found {text!r}")
    return value


def jobs_option() -> argparse.ArgumentParser:
    """``--jobs N`` of a verb that trains a grid of runs (``ablate``, ``compare``)."""
    p = _parent()
    p.add_argument("--jobs", type=_jobs, default=1,
                   help="runs trained at once, each in its own process with train.num_threads threads (1 when "
                        "unset), seed by seed: every variant's or model's first seed before any second one; e.g. "
                        "--jobs 2 on 2 cores (default 1: one run after the other)")
    return p


VERBOSE_HELP = "on an error, print the traceback and the full message (also: EMODISTILL_DEBUG=1)"
VIDEO_VERBOSE_HELP = ("show third-party log lines (MediaPipe, TensorFlow Lite), and on an error the traceback and "
                      "the full message (also: EMODISTILL_DEBUG=1)")


def verbose_option(help: str = VERBOSE_HELP) -> argparse.ArgumentParser:
    """``--verbose``: details on errors; a verb that also shows more logs with it says so in ``help``
    (``emodistill --verbose VERB`` works for every verb)."""
    p = _parent()
    p.add_argument("--verbose", action="store_true", help=help)
    return p


def training_options(run_dir_default: str) -> list[argparse.ArgumentParser]:
    """The options of every verb that trains (train, ablate, compare, tune): --data, --config, --epochs,
    --device, --run-dir, --quiet."""
    return [data_option(), config_option(), epochs_option(), device_option(), run_dir_option(run_dir_default),
            quiet_option()]


OVERRIDES_HELP = ("Options not listed here override recipe values as --train.NAME VALUE, --model.NAME VALUE or "
                  "--data.NAME VALUE (e.g. --train.lr 3e-4 --model.d_model 30); each value is converted to the "
                  "field's type; `emodistill train --help-config [--model NAME]` lists every field.")


def parse_overrides(extra: list[str]) -> list[tuple[str, str]]:
    """``--train.lr 3e-4 --model.d_model=30`` -> ``[("train.lr", "3e-4"), ("model.d_model", "30")]``.

    Raises:
        ValueError: a token that is not an override, or an override without a value.
    """
    out, i = [], 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--") or "." not in tok.split("=", 1)[0]:
            raise ValueError(f"unrecognised argument {tok!r} (overrides look like --train.lr 3e-4)")
        key = tok[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(extra):
                raise ValueError(f"override {tok} needs a value")
            value = extra[i + 1]
            i += 2
        out.append((key, value))
    return out


def yaml_mapping(text: str) -> dict:
    """argparse type: ``'{split: fold, fold: 3}'`` -> dict."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a YAML mapping such as '{{split: fold}}', got {text!r}")
    return value
