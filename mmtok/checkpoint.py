"""Checkpoints: a folder with ``config.json`` + ``model.safetensors``; no pickle anywhere.

config.json = {format_version, mmtok_version, model: {class, args} (the constructor arguments,
nested for injected modules), weights_sha256}. Load = rebuild from config -> verify the
weights' sha256 -> strict load -> eval. Every failure is a CheckpointError naming the path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mmtok.configurable import build, to_spec
from mmtok.errors import CheckpointError, ConfigError
from mmtok.fileutil import make_dir

FORMAT_VERSION = 1
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_pretrained(model: nn.Module, path: str | os.PathLike) -> None:
    """Write ``path/config.json`` and ``path/model.safetensors``; the folder appears whole."""
    from mmtok import __version__

    path = Path(path)
    make_dir(path.parent, "checkpoint folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME))
        config = {
            "format_version": FORMAT_VERSION,
            "mmtok_version": __version__,
            "model": to_spec(model),
            "weights_sha256": sha256_file(tmp / WEIGHTS_NAME),
        }
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_config(path: Path) -> dict:
    cfg_path = path / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r}: no {CONFIG_NAME}")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {str(cfg_path)!r}: not valid JSON ({e})") from e
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        got = config.get("format_version") if isinstance(config, dict) else None
        raise CheckpointError(
            f"checkpoint {str(cfg_path)!r}: format_version {got!r}, expected {FORMAT_VERSION}"
        )
    unknown = sorted(set(config) - {"format_version", "mmtok_version", "model", "weights_sha256"})
    if unknown:
        raise CheckpointError(f"checkpoint {str(cfg_path)!r}: unknown key(s) {unknown}")
    return config


def resolve(path_or_preset: str | os.PathLike) -> tuple[Path, str | None]:
    """A checkpoint folder, or a bundled preset name -> (folder, expected sha256 or None)."""
    from mmtok.presets import PRESETS, preset_dir

    if str(path_or_preset) in PRESETS:
        return preset_dir(str(path_or_preset)), PRESETS[str(path_or_preset)].sha256
    path = Path(path_or_preset)
    if not path.is_dir():
        raise CheckpointError(
            f"{str(path_or_preset)!r} is neither a checkpoint folder nor a preset "
            f"(presets: {sorted(PRESETS)})"
        )
    return path, None


def load_pretrained(path_or_preset: str | os.PathLike) -> nn.Module:
    """Rebuild a model from config.json, check the weights hash, load strictly, eval()."""
    path, expected_sha = resolve(path_or_preset)
    config = read_config(path)
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r}: no {WEIGHTS_NAME}")
    digest = sha256_file(weights)
    for want in {config.get("weights_sha256"), expected_sha} - {None}:
        if digest != want:
            raise CheckpointError(f"{str(weights)!r}: sha256 {digest[:12]}… != expected "
                                  f"{want[:12]}… (corrupted or modified file)")  # fmt: skip
    try:
        model = build(config["model"])
    except (ConfigError, KeyError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r}: bad model config: {e}") from e
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{str(weights)!r}: not a safetensors file ({e})") from e
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{str(weights)!r} does not match the config: {e}") from e
    model.name = str(path_or_preset)
    return model.eval()
