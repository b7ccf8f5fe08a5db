"""`mmtok demo` writes a report whose every link points at a file it wrote."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest
import torch

from mmtok import codecs, demo_notes
from mmtok.checkpoint import load_pretrained
from mmtok.demo import SAMPLES, run_demo, run_one, sample_files
from mmtok.image.tokenizer import image_tokenizer
from mmtok.media import read_media
from mmtok.metrics import mel_distance, psnr, si_snr
from mmtok.presets import list_presets


def _links(report):
    return re.findall(r'(?:src|href)="([^"]+)"', report.read_text())


def _check_links(report):
    links = _links(report)
    for link in links:
        assert not link.startswith(("/", "http")), link
        assert (report.parent / link).is_file(), link
    return links


def test_samples_are_bundled_and_small():
    files = sample_files()
    assert {f.suffix for f in files} == {".png", ".flac", ".mp4"}
    assert all(f.stat().st_size < 300_000 for f in files)


def test_demo_with_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    tok = image_tokenizer(downsample=4, hidden=8, latent_dim=8, codebook_size=32)
    tok.train()
    tok(torch.rand(2, 3, 32, 32) * 2 - 1)
    tok.save_pretrained(tmp_path / "ck")
    report = run_demo([], tmp_path / "out", preset=str(tmp_path / "ck"))
    links = _check_links(report)
    assert "coffee.recon.png" in links and "coffee.usage.png" in links
    text = report.read_text()
    assert "PSNR" in text and "compression" in text
    assert text.count("skipped") == 2  # the audio and video samples do not fit an image model


@pytest.mark.skipif(not list_presets(), reason="no bundled presets yet")
def test_demo_cli_on_bundled_defaults(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mmtok", "demo", "-o", str(tmp_path / "d")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "report:" in r.stdout
    _check_links(tmp_path / "d" / "report.html")


def _token_bits(tok, x):
    from mmtok.media import MediaSpec, duration_s

    ids = tok.encode(x).ids
    return ids.numel() * math.log2(tok.codebook_size), duration_s(x, MediaSpec.of(tok))


@pytest.mark.skipif(not list_presets(), reason="no bundled presets yet")
def test_image_codec_rows_come_from_mmtok_codecs(tmp_path):
    """The JPEG / WebP rows of the bundled image are mmtok.codecs at the token bits, recomputed
    here; a budget under the smallest file says so and names that file's bits."""
    path = SAMPLES / "coffee.png"
    res = run_one(path, tmp_path, None)
    assert not res.error, res.error
    tok = load_pretrained(res.preset)
    x = read_media(path, tok)
    bits, _ = _token_bits(tok, x)
    for fmt, name in (("JPEG", "JPEG"), ("WEBP", "WebP")):
        r = codecs.codec_at_bits(x[0], fmt, bits)
        assert r.fits and r.bits <= bits
        want = f"PSNR {psnr(x[0], r.recon):.2f} dB (quality {r.quality}, {r.bits:,} bits)"
        assert res.stats[f"{name} at the same bits"] == want
    assert "tokens of 12 bits" in res.summary and res.doc == "docs/image.md"
    smallest = codecs.codec_at_bits(x[0], "JPEG", 64).bits
    rows = demo_notes.image_codec_rows(x, 64)
    assert rows["JPEG at the same bits"].startswith(
        f"JPEG cannot go this small (smallest: {smallest:,} bits"
    )


@pytest.mark.skipif(not list_presets(), reason="no bundled presets yet")
def test_audio_codec_rows_come_from_mmtok_codecs(tmp_path):
    """The Opus row of the bundled audio is mmtok.codecs at the token bitrate per channel,
    SI-SNR and mel distance recomputed here; under 6 kbit/s the row says Opus is at its floor."""
    path = SAMPLES / "loop_amen.flac"
    res = run_one(path, tmp_path, None)
    assert not res.error, res.error
    tok = load_pretrained(res.preset)
    x = read_media(path, tok)
    bits, secs = _token_bits(tok, x)
    per_channel = bits / secs / x.shape[1]
    z = codecs.opus_at_bitrate(x[0], tok.sample_rate, per_channel).recon[None]
    row = res.stats["Opus at the same bitrate"]
    assert row.startswith(f"SI-SNR {si_snr(x, z):.2f} dB, mel distance "
                          f"{mel_distance(x, z, tok.sample_rate):.3f}")  # fmt: skip
    assert f"({per_channel / 1000:.1f} kbit/s per channel)" in row
    assert f"{per_channel / 1000:.1f} kbit/s per channel." in res.summary
    assert "SI-SNR" in res.stats and "mel distance" in res.stats
    low = demo_notes.audio_codec_rows(x[..., : tok.sample_rate // 2], tok.sample_rate, 3000.0)
    ((label, text),) = low.items()
    assert label == "Opus at its 6 kbit/s floor" and "(6.0 kbit/s per channel" in text


def test_video_codec_row_comes_from_mmtok_codecs(tmp_path):
    """The H.264 row of the bundled clip is mmtok.codecs at the token bits, PSNR recomputed."""
    path = SAMPLES / "bigbuckbunny.mp4"
    res = run_one(path, tmp_path, None)
    assert not res.error, res.error
    tok = load_pretrained(res.preset)
    x = read_media(path, tok)
    bits, _ = _token_bits(tok, x)
    r = codecs.h264_at_bits(x[0], tok.fps, bits)
    row = res.stats["H.264 at the same bits"]
    # libx264's file sizes were seen to move by ~0.3 % between encodes inside a test process,
    # so the recomputation is compared with tolerances; both must fit the token bits
    found = re.fullmatch(r"PSNR ([\d.]+) dB \(CRF (\d+), ([\d,]+) bits\)", row)
    assert r.fits and found, row
    assert abs(int(found[2]) - (codecs.H264_CRF[1] - r.quality)) <= 2
    assert int(found[3].replace(",", "")) <= bits and r.bits <= bits
    assert abs(float(found[1]) - psnr(x[0], r.recon)) < 0.5


def test_report_explains_each_section(tmp_path):
    """Each section has its sentence, the meaning of its numbers and a working doc link."""
    torch.manual_seed(0)
    tok = image_tokenizer(downsample=4, hidden=8, latent_dim=8, codebook_size=32)
    tok.train()
    tok(torch.rand(2, 3, 32, 32) * 2 - 1)
    tok.save_pretrained(tmp_path / "ck")
    report = run_demo([SAMPLES / "coffee.png"], tmp_path / "out", preset=str(tmp_path / "ck"))
    links = _check_links(report)
    text = report.read_text()
    assert "256x192 image -&gt; 48x64 grid x Q=1 = 3,072 tokens of 5 bits" in text
    assert "higher is better" in text and "JPEG at the same bits" in text
    assert "WebP at the same bits" in text and "docs/image.md" in links


def test_summary_says_when_the_original_was_resampled(tmp_path):
    """The bundled loop is a 22.05 kHz file: through the 44.1 kHz default the report says it
    was resampled (and from which rate); through a 22.05 kHz preset it says nothing."""
    import soundfile as sf

    path = SAMPLES / "loop_amen.flac"
    rate = sf.info(path).samplerate
    for sub in "abc":
        (tmp_path / sub).mkdir()
    res = run_one(path, tmp_path / "a", "music44-hop32")
    assert f"resampled from {rate} Hz to 44100 Hz" in res.summary, res.summary
    res = run_one(path, tmp_path / "b", "audio-hop32")
    assert rate == 22050 and "resampled" not in res.summary and not res.error
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, sf.read(path)[0][:, None].repeat(2, axis=1), rate)
    res = run_one(stereo, tmp_path / "c", "audio-hop32")  # the demo codes the mono mix
    assert "mixed from 2 channels to 1" in res.summary and "resampled" not in res.summary
