"""``emodistill models`` and ``emodistill recipes``: list the registered models and the shipped recipes."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Neither verb takes an argument."""


def run(args: argparse.Namespace) -> int:
    if args.cmd == "recipes":
        from emodistill.training.config import list_recipes, recipe_dir

        print(f"recipes in {recipe_dir()}:")
        for name in list_recipes():
            print(f"  {name}")
        return 0
    from emodistill.models import list_models

    for name, desc in list_models().items():
        print(f"{name:14s} {desc}")
    return 0
