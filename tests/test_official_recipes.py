"""The shipped DMD recipes against the official DMD configuration, field by field.

The official values are kept here as data, copied from the authors' file rather than from our recipes,
so that changing a recipe value (or the mapping in docs/dmd-spec.md §2) makes this test fail.
"""

import pytest

from emodistill.training.config import load_recipe, resolve_recipe

OFFICIAL_SOURCE = (
    "github.com/mdswyz/DMD, commit 516d4e116c22220e08873fa38df828d1a0d6f7e8, config/config.json: "
    "section 'dmd' L41-97 (commonParams L42-50, datasetParams.mosi L52-73, datasetParams.mosei L74-95)"
)

OFFICIAL_COMMON = {  # config/config.json L42-50
    "need_data_aligned": True,  # L43; per recipe: the aligned recipes only (see ALIGNED below)
    "need_model_aligned": True,  # L44; unused by the official code
    "early_stop": 10,  # L45
    "use_bert": True,  # L46
    "use_finetune": True,  # L47
    "attn_mask": True,  # L48
    "update_epochs": 10,  # L49
}

OFFICIAL_DATASET = {
    "mosi": {  # config/config.json L52-73
        "attn_dropout_a": 0.2,  # L53
        "attn_dropout_v": 0.0,  # L54
        "relu_dropout": 0.0,  # L55
        "embed_dropout": 0.2,  # L56
        "res_dropout": 0.0,  # L57
        "dst_feature_dim_nheads": [50, 10],  # L58
        "batch_size": 16,  # L59
        "learning_rate": 0.0001,  # L60
        "nlevels": 4,  # L61
        "conv1d_kernel_size_l": 5,  # L62
        "conv1d_kernel_size_a": 5,  # L63
        "conv1d_kernel_size_v": 5,  # L64
        "text_dropout": 0.5,  # L65
        "attn_dropout": 0.3,  # L66
        "output_dropout": 0.5,  # L67
        "grad_clip": 0.6,  # L68
        "patience": 5,  # L69
        "weight_decay": 0.005,  # L70
        "transformers": "bert",  # L71
        "pretrained": "bert-base-uncased",  # L72
    },
    "mosei": {  # config/config.json L74-95
        "attn_dropout_a": 0.0,  # L75
        "attn_dropout_v": 0.0,  # L76
        "relu_dropout": 0.0,  # L77
        "embed_dropout": 0.0,  # L78
        "res_dropout": 0.0,  # L79
        "dst_feature_dim_nheads": [30, 6],  # L80
        "batch_size": 16,  # L81
        "learning_rate": 0.0001,  # L82
        "nlevels": 4,  # L83
        "conv1d_kernel_size_l": 5,  # L84
        "conv1d_kernel_size_a": 1,  # L85
        "conv1d_kernel_size_v": 3,  # L86
        "text_dropout": 0.3,  # L87
        "attn_dropout": 0.4,  # L88
        "output_dropout": 0.5,  # L89
        "grad_clip": 0.6,  # L90
        "patience": 5,  # L91
        "weight_decay": 0.001,  # L92
        "transformers": "bert",  # L93
        "pretrained": "bert-base-uncased",  # L94
    },
}

# Official key -> dotted recipe key (docs/dmd-spec.md §2). dst_feature_dim_nheads is a pair and maps to
# two recipe keys; the keys listed in NOT_USED below have no recipe key on purpose.
KEY_MAP = {
    "early_stop": "train.early_stop",
    "attn_mask": "model.attn_mask",
    "update_epochs": "train.update_every",  # mini-batches per optimiser step (§6.2)
    "use_finetune": "model.finetune_text",
    "attn_dropout_a": "model.attn_dropout_a",
    "attn_dropout_v": "model.attn_dropout_v",
    "relu_dropout": "model.relu_dropout",
    "embed_dropout": "model.embed_dropout",
    "res_dropout": "model.res_dropout",
    "batch_size": "train.batch_size",
    "learning_rate": "train.lr",
    "nlevels": "model.nlevels",
    "conv1d_kernel_size_l": "model.kernel_l",
    "conv1d_kernel_size_a": "model.kernel_a",
    "conv1d_kernel_size_v": "model.kernel_v",
    "text_dropout": "model.text_dropout",
    "attn_dropout": "model.attn_dropout",
    "output_dropout": "model.output_dropout",
    "grad_clip": "train.grad_clip_value",  # clip_grad_value_, not a norm
    "patience": "train.plateau_patience",  # ReduceLROnPlateau patience
    "pretrained": "model.text_encoder",
}
PAIR_MAP = {"dst_feature_dim_nheads": ("model.d_model", "model.num_heads")}

# Official keys deliberately without a recipe value of their own (docs/dmd-spec.md §2.1-2.2), with the
# value the recipe holds instead where there is one.
NOT_USED = {
    "weight_decay": ("train.weight_decay", 0.0),  # listed, but the official optimiser is built without it (§6.1)
    "need_model_aligned": None,  # unused by the official code
    "use_bert": ("model.text_encoder", "bert-base-uncased"),  # always true in DMD: a BERT text encoder
    "transformers": None,  # the family of `pretrained`; our text_encoder names the model itself
    "need_data_aligned": None,  # chooses the pickle: checked against the recipe's data file below
}

ALIGNED = {"aligned": True, "unaligned": False}
RECIPES = [(ds, al) for ds in ("mosi", "mosei") for al in ALIGNED]


def _get(recipe: dict, dotted: str):
    section, key = dotted.split(".")
    assert key in recipe.get(section, {}), f"recipe has no {dotted}"
    return recipe[section][key]


def test_every_official_key_is_mapped_or_listed_as_unused():
    official = set(OFFICIAL_COMMON) | set(OFFICIAL_DATASET["mosi"])
    assert set(OFFICIAL_DATASET["mosi"]) == set(OFFICIAL_DATASET["mosei"])
    assert official == set(KEY_MAP) | set(PAIR_MAP) | set(NOT_USED)


@pytest.mark.parametrize(("dataset", "alignment"), RECIPES, ids=[f"{d}_{a}" for d, a in RECIPES])
def test_recipe_matches_official_config(dataset, alignment):
    name = f"dmd_{dataset}_{alignment}"
    recipe = load_recipe(name)
    official = {**OFFICIAL_COMMON, **OFFICIAL_DATASET[dataset]}
    assert recipe["model"]["name"] == "dmd"
    assert recipe["data"]["dataset"] == dataset
    for key, ours in KEY_MAP.items():
        assert _get(recipe, ours) == official[key], (
            f"{name}: {ours} = {_get(recipe, ours)!r}, official {key} = {official[key]!r} ({OFFICIAL_SOURCE})"
        )
    for key, ours in PAIR_MAP.items():
        got = [_get(recipe, k) for k in ours]
        assert got == official[key], f"{name}: {ours} = {got}, official {key} = {official[key]} ({OFFICIAL_SOURCE})"
    for replacement in NOT_USED.values():
        if replacement is not None:
            ours, value = replacement
            assert _get(recipe, ours) == value, f"{name}: {ours} = {_get(recipe, ours)!r}, expected {value!r}"
    # need_data_aligned picks MMSA's aligned_50.pkl or unaligned_50.pkl (official config.py L27): the recipe
    # documents which file it is for.
    data_file = "aligned_50.pkl" if ALIGNED[alignment] else "unaligned_50.pkl"
    header = resolve_recipe(name).read_text().split("\nmodel:")[0]
    assert f"Processed/{data_file}" in header and (ALIGNED[alignment] or "/aligned_50.pkl" not in header)
