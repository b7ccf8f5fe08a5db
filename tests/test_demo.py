"""`mmtok demo` writes a report whose every link points at a file it wrote."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from mmtok.demo import run_demo, sample_files
from mmtok.image.tokenizer import image_tokenizer
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
