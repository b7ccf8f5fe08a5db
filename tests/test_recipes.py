"""Every bundled preset's recipe builds exactly the preset's architecture (config.json), so
the training command in recipes/README.md reproduces that preset's model, restart threshold
included."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mmtok.configurable import build, to_spec
from mmtok.presets import PRESETS, preset_dir
from mmtok.train.config import load_config
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
