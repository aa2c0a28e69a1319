"""Write the checkpoints of tests/test_checkpoint_compat.py with the code of an older commit.

They were made with emodistill at commit 050218a (before the package was reorganised into training/,
experiments/, models/dmd/ and models/layers/), so the test proves that checkpoints written before the
move still load and predict the same. Run from a checkout of that commit:

    PYTHONPATH=OLD_CHECKOUT/src python tests/data/legacy/make_legacy_checkpoints.py tests/data/legacy

For each model it trains one epoch on the tiny MMSA pickle of tests/conftest.py (seed 0, aligned,
dims 16/4/6, T 8) and stores ``<model>.ckpt`` plus the eval-mode test-split predictions in
``<model>.expected.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from conftest import write_mmsa_pickle  # noqa: E402

MODELS = {
    "dmd": {"d_model": 8, "num_heads": 2, "nlevels": 1, "gd_size_homo": 8, "gd_size_hetero": 4},
    "dhmd": {"d_model": 8, "num_heads": 2, "nlevels": 1, "gd_size_homo": 8, "gd_size_hetero": 4, "dict_size": 6},
    "mult": {"d_model": 8, "num_heads": 2, "nlevels": 1},
    "late_fusion": {"hidden": 8},
    "tfn": {"text_hidden": 8, "audio_hidden": 4, "vision_hidden": 4, "text_out": 4, "post_fusion_dim": 8},
    "lmf": {"text_hidden": 8, "audio_hidden": 4, "vision_hidden": 4},
    "lf_dnn": {"text_hidden": 8, "audio_hidden": 4, "vision_hidden": 4, "text_out": 8, "post_fusion_dim": 8},
    "ef_lstm": {"hidden": 8, "num_layers": 1},
    "misa": {"hidden_size": 8, "fusion_ff": 16},
    "self_mm": {"post_fusion_dim": 8},
}


def main(out_dir: str) -> None:
    from emodistill.data import load_dataset
    from emodistill.data.loader import BatchLoader

    try:  # the layout before the reorganisation
        from emodistill.train.checkpoint import load_checkpoint
        from emodistill.train.config import RunConfig
        from emodistill.train.run import fit
    except ImportError:  # pragma: no cover - a newer checkout
        from emodistill import RunConfig, fit, load_checkpoint

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "_work"
    pkl = write_mmsa_pickle(tmp / "tiny.pkl", dims=(16, 4, 6), aligned=True, seed=0)
    data = load_dataset(str(pkl))
    for name, cfg in MODELS.items():
        run_cfg = RunConfig.from_dict({"model": {"name": name, **cfg},
                                       "train": {"max_epochs": 1, "batch_size": 4, "update_every": 1},
                                       "data": {"source": str(pkl)}})
        fit(run_cfg, data, tmp / name, quiet=True)
        (out / f"{name}.ckpt").write_bytes((tmp / name / "best.ckpt").read_bytes())
        model, _ = load_checkpoint(out / f"{name}.ckpt")
        batch = next(iter(BatchLoader(data.splits["test"], 64, shuffle=False)))
        with torch.no_grad():
            pred = model(batch).prediction.view(-1).tolist()
        (out / f"{name}.expected.json").write_text(json.dumps({"model": name, "test_prediction": pred}) + "\n")
    import shutil

    shutil.rmtree(tmp)


if __name__ == "__main__":
    main(sys.argv[1])
