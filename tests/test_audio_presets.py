"""Bundled audio presets: present, checksummed, the default picked for audio, and they
reconstruct the bundled loop (SI-SNR thresholds measured in recipes/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmtok.checkpoint import load_pretrained, sha256_file
from mmtok.media import read_media
from mmtok.metrics import si_snr, snr
from mmtok.presets import PRESETS, Preset, default_preset, list_presets, preset_dir

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


# (SI-SNR, SNR) of loop_amen.flac (a training-split clip, 1.75 s at 22.05 kHz) measured with
# each preset (recipes/README.md), minus 1 dB
LOOP_SI_SNR_DB = {
    "audio-hop8": (0.87, 2.85),
    "audio-hop32": (0.14, 2.45),
    "audio-hop128": (-0.16, 2.19),
}


# (SI-SNR, SNR) of loop_amen.flac at 44.1 kHz (drums: out of the game-music training domain)
# with the 44.1 kHz music presets (residual VQ at n_q = 1 and 8), minus 1 dB
MUSIC_LOOP_SI_SNR_DB = {
    ("music44-hop8", None): (3.36, 4.62),
    ("music44-hop32", None): (2.98, 4.37),
    ("music44-hop128", None): (-0.11, 2.43),
    ("music44-rvq", 1): (-1.67, 1.67),
    ("music44-rvq", 8): (1.58, 3.43),
}


def test_music_presets_are_bundled_and_music44_hop32_is_the_default():
    from mmtok.presets import MUSIC_LEVELS

    assert default_preset("audio") == "music44-hop32"
    for name in {*MUSIC_LEVELS, "music44-rvq"}:
        weights = preset_dir(name) / "model.safetensors"
        assert PRESETS[name].modality == "audio" and weights.stat().st_size <= 8_000_000
        assert sha256_file(weights) == PRESETS[name].sha256
        assert load_pretrained(name).sample_rate == 44100


@pytest.mark.parametrize("name,n_q", sorted(MUSIC_LOOP_SI_SNR_DB, key=str))
def test_music_preset_reconstructs_the_bundled_loop(name, n_q):
    tok = load_pretrained(name)
    x = read_media(LOOP, tok)  # [1, 1, T] mono at 44.1 kHz
    y = tok.decode(tok.encode(x, n_q=n_q))
    assert y.shape == x.shape
    min_si_snr, min_snr = MUSIC_LOOP_SI_SNR_DB[(name, n_q)]
    assert si_snr(x, y) >= min_si_snr and snr(x, y) >= min_snr


def test_audio_presets_are_bundled():
    assert set(LOOP_SI_SNR_DB) <= set(list_presets())
    for name in LOOP_SI_SNR_DB:
        weights = preset_dir(name) / "model.safetensors"
        assert PRESETS[name].modality == "audio" and weights.stat().st_size <= 5_000_000
        assert sha256_file(weights) == PRESETS[name].sha256


@pytest.mark.parametrize("name", sorted(LOOP_SI_SNR_DB))
def test_audio_preset_reconstructs_the_bundled_loop(name):
    tok = load_pretrained(name)
    assert tok.hop == int(name.removeprefix("audio-hop")) and tok.sample_rate == 22050
    x = read_media(LOOP, tok)  # [1, 1, T] mono at 22.05 kHz
    tokens = tok.encode(x)
    assert tokens.ids.shape == (1, 1, -(-x.shape[-1] // tok.hop))
    y = tok.decode(tokens)
    assert y.shape == x.shape
    min_si_snr, min_snr = LOOP_SI_SNR_DB[name]
    assert si_snr(x, y) >= min_si_snr and snr(x, y) >= min_snr


def test_multilevel_from_the_bundled_levels():
    from mmtok.audio.tokenizer import MultiLevelAudioTokenizer
    from mmtok.errors import InputError
    from mmtok.presets import MUSIC_LEVELS

    levels = MultiLevelAudioTokenizer.from_levels()  # the 44.1 kHz Jukebox levels
    assert levels.hops == (8, 32, 128) and levels.sample_rate == 44100
    x = read_media(LOOP, levels.levels[0])[..., :22050]
    for (hop, tokens), name in zip(levels.encode(x).items(), MUSIC_LEVELS, strict=True):
        assert torch.equal(tokens.ids, load_pretrained(name).encode(x).ids), hop
    old = MultiLevelAudioTokenizer.from_levels(sorted(LOOP_SI_SNR_DB))  # 22.05 kHz levels
    assert old.hops == (8, 32, 128) and old.sample_rate == 22050
    with pytest.raises(InputError, match="no audio levels"):
        MultiLevelAudioTokenizer.from_levels([])
