"""Every bundled preset's recipe builds exactly the preset's architecture (config.json), so
the training command in recipes/README.md reproduces that preset's model, restart threshold
included; the 22.05 kHz audio level recipes are small diffs of one base."""

from __future__ import annotations

import json
import re
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmtok.configurable import build, to_spec
from mmtok.presets import PRESETS, preset_dir
from mmtok.train.config import load_config, read_recipe
from mmtok.train.modalities import build_model

ROOT = Path(__file__).resolve().parents[1]


def _recipe(name: str) -> Path:
    found = re.search(r"recipes/(\w+\.yaml)", PRESETS[name].description)
    assert found, f"{name}: the description names no recipe"
    return ROOT / "recipes" / found.group(1)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_recipe_builds_the_bundled_preset_architecture(name):
    if not (preset_dir(name) / "config.json").exists():
        pytest.skip(f"{name} is not bundled in this checkout")
    bundled = json.loads((preset_dir(name) / "config.json").read_text())["model"]
    cfg = load_config(_recipe(name), [])
    assert cfg.model.modality == PRESETS[name].modality
    # rebuilt from its config, the bundled model gains arguments added since with their defaults
    assert to_spec(build_model(cfg.model.modality, cfg.model.args)) == to_spec(build(bundled))


AUDIO_LEVELS = ("audio_hop8", "audio_hop32", "audio_hop128")


def _leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_audio_level_recipes_are_small_diffs_of_one_base():
    """Each level recipe states only what differs: one shared base, no value the base already
    gives, no setting common to all three levels, at most one shared by any two."""
    own = {n: yaml.safe_load((ROOT / "recipes" / f"{n}.yaml").read_text()) for n in AUDIO_LEVELS}
    bases = {tree.pop("base") for tree in own.values()}
    assert len(bases) == 1, bases
    base = _leaves(read_recipe(ROOT / "recipes" / bases.pop())[0])
    levels = {name: _leaves(tree) for name, tree in own.items()}
    for name, leaves in levels.items():
        restated = sorted(k for k, v in leaves.items() if k in base and base[k] == v)
        assert not restated, f"{name} restates its base: {restated}"
    common = set.intersection(*({(k, repr(v)) for k, v in lv.items()} for lv in levels.values()))
    assert common <= {("description", None)}, f"belongs in the base: {sorted(common)}"
    for a, b in combinations(AUDIO_LEVELS, 2):
        shared = sorted(k for k, v in levels[a].items() if k in levels[b] and levels[b][k] == v)
        assert len(shared) <= 1, f"{a} and {b} both set {shared}"
