"""Bundled audio presets: present, checksummed, the default picked for audio, and they
reconstruct the bundled loop (SI-SNR thresholds measured in recipes/README.md)."""

from __future__ import annotations

from pathlib import Path

from mmtok.presets import Preset, default_preset

LOOP = Path(__file__).resolve().parents[1] / "mmtok/assets/samples/loop_amen.flac"


def test_default_preset_prefers_the_marked_one(monkeypatch, tmp_path):
    fake = {
        "b-one": Preset("audio", "", "0" * 64),
        "a-two": Preset("audio", "", "0" * 64),
        "c-three": Preset("audio", "", "0" * 64, default=True),
        "d-img": Preset("image", "", "0" * 64),
    }
    for name in fake:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    monkeypatch.setattr("mmtok.presets.PRESETS", fake)
    monkeypatch.setattr("mmtok.presets.ASSETS", tmp_path)
    assert default_preset("audio") == "c-three"
    assert default_preset("image") == "d-img"  # the only one
    assert default_preset("video") is None
    (tmp_path / "c-three" / "config.json").unlink()  # a marked preset that is absent
    assert default_preset("audio") == "a-two"
