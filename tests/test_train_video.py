"""Video training: seeded clips, held-out clips, a 3-step run through the CLI, SSIM, the recipe."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mmtok.checkpoint import load_pretrained
from mmtok.metrics import ssim
from mmtok.train import Trainer, load_config
from mmtok.train.__main__ import main
from mmtok.train.modalities import build_model
from mmtok.train.video import (
    ClipSpec,
    VideoClips,
    eval_set,
    evaluate_heldout,
    tokens_per_second,
)
from mmtok.video.io import save_video

REPO = Path(__file__).resolve().parents[1]


def _write_videos(folder: Path, n_train: int = 3, n_heldout: int = 1) -> Path:
    """Moving smooth colour patterns, 20 frames at 10 fps, + manifest.jsonl; the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(0)
    rows = []
    for i in range(n_train + n_heldout):
        t, h, w = 20, 36 + 4 * (i % 2), 44
        tt, yy, xx = np.mgrid[0:t, 0:h, 0:w] / 16
        phase = g.uniform(0, 6, size=3)
        rgb = np.stack([np.sin(3 * xx + 2 * yy - (1 + c) * tt + p) for c, p in enumerate(phase)])
        name = f"vid{i}.mp4"
        save_video(folder / name, torch.from_numpy(0.8 * rgb).float(), fps=10)
        split = "heldout" if i >= n_train else "train"
        rows.append({"path": name, "frames": t, "fps": 10.0, "split": split})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return _write_videos(tmp_path_factory.mktemp("videos"))


TINY = """base: {base}
model: {{modality: video, downsample: [2, 4, 4], hidden: 8, latent_dim: 8, codebook_size: 16,
         clip_frames: 8, fps: 5.0}}
data: {{manifest: {manifest}, crop: 16, resize: 24, batch_size: 2, repeats: 2, eval_size: 16}}
train: {{steps: 3, warmup_steps: 1, ckpt_every: 0, log_every: 1, out_dir: {out},
         progress: false, tensorboard: false}}
"""


def test_clips_are_seeded_by_key(manifest):
    files = [manifest.parent / f"vid{i}.mp4" for i in range(3)]
    spec = ClipSpec(clip_frames=8, fps=5.0)
    a = VideoClips(files, spec, crop=16, resize=24, repeats=2, seed=1)
    b = VideoClips(files, spec, crop=16, resize=24, repeats=2, seed=1)
    assert [v.shape for v in a.videos] == [(3, 10, 24, 29), (3, 10, 24, 26), (3, 10, 24, 29)]
    assert all(v.dtype == torch.uint8 for v in a.videos)  # decoded once, kept as uint8
    assert len(a) == 3 * 1 * 2  # one 8-frame slot per 10-frame video, 2 repeats
    x = a[(0, 4)]
    assert x.shape == (3, 8, 16, 16) and x.dtype == torch.float32
    assert torch.equal(x, b[(0, 4)])
    assert not torch.equal(a[(0, 4)], a[(1, 4)])
    assert -1 <= x.min() and x.max() <= 1


def test_heldout_clips_are_centre_crops(manifest):
    cfg = load_config(
        REPO / "recipes/base.yaml", [f"data.manifest={manifest}", "data.eval_size=16"]
    )
    clips = eval_set(cfg.data, ClipSpec(clip_frames=4, fps=10.0))
    assert len(clips) == 3 and all(c.shape == (3, 4, 16, 16) for c in clips)  # 20 frames: 3 clips
    whole = eval_set(cfg.data, ClipSpec(clip_frames=32, fps=None))  # shorter than one clip
    assert len(whole) == 1 and whole[0].shape == (3, 20, 16, 16)


def test_three_steps_through_the_cli(manifest, tmp_path):
    recipe = tmp_path / "tiny_video.yaml"
    out = tmp_path / "run"
    base = REPO / "recipes/base.yaml"
    recipe.write_text(TINY.format(base=base, manifest=manifest, out=out))
    assert main([str(recipe)]) == 0
    for name in ("recipe.yaml", "summary.json", "final/config.json", "final/model.safetensors",
                 "plots/reconstructions.png", "plots/loss.png"):  # fmt: skip
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["heldout_samples"] == 1  # 10 frames at 5 fps
    tok = load_pretrained(out / "final")
    assert (tok.clip_frames, tok.fps, tok.downsample) == (8, 5.0, (2, 4, 4))

    # the trainer cuts clips of the recipe's clip length and frame rate
    trainer = Trainer(load_config(recipe))
    assert trainer.dataset[(0, 0)].shape == (3, 8, 16, 16)
    assert [v.shape[1] for v in trainer.dataset.videos] == [10, 10, 10]

    report = evaluate_heldout(tok, load_config(recipe).data)
    assert report.clips == 1 and report.clip_shape == [3, 8, 16, 16]
    assert 0 < report.usage <= 1 and report.total_codes == 16
    assert math.isfinite(report.psnr_db) and -1 <= report.ssim <= 1
    # 8 frames -> 4 x 4 x 4 latent positions per clip, 5 / 8 clips per second
    assert report.tokens_per_second == tokens_per_second(tok, 16, 16) == 4 * 4 * 4 * 5 / 8


def _slow_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """SSIM straight from Wang et al. (2004): an explicit 11x11 Gaussian window (sigma 1.5)
    at every valid position of every plane, averaged."""
    r = np.arange(11) - 5
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    w /= w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for a, b in zip(x.reshape(-1, *x.shape[-2:]), y.reshape(-1, *y.shape[-2:]), strict=True):
        for i in range(a.shape[0] - 10):
            for j in range(a.shape[1] - 10):
                pa, pb = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
                ma, mb = (w * pa).sum(), (w * pb).sum()
                va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
                cov = (w * (pa - ma) * (pb - mb)).sum()
                num = (2 * ma * mb + c1) * (2 * cov + c2)
                values.append(num / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_against_a_slow_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 16, 19, generator=g) * 2 - 1
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    for sigma in (0.05, 0.3):
        y = (x + sigma * torch.randn(x.shape, generator=g)).clamp(-1, 1)
        want = _slow_ssim(x.double().numpy(), y.double().numpy(), 2.0)
        assert ssim(x, y) == pytest.approx(want, abs=1e-9)
        assert ssim(x, y) < 1
    # scaling pixels and the data range together leaves SSIM unchanged
    assert ssim(x * 127.5, y * 127.5, 255.0) == pytest.approx(ssim(x, y), abs=1e-9)


def test_shipped_recipe_loads_and_fits_5_mb():
    cfg = load_config(REPO / "recipes/video_small.yaml")
    assert cfg.model.modality == "video" and cfg.data.crop == 64
    tok = build_model(cfg.model.modality, cfg.model.args)
    assert tok.clip_frames == 16 and tok.fps and tok.downsample == (4, 4, 4)
    size = sum(v.numel() * v.element_size() for v in tok.state_dict().values())
    assert size <= 5_000_000


def test_two_trainers_keep_their_own_clip_length(manifest, tmp_path):
    """A trainer of 8-frame clips built before one of 4-frame clips still evaluates 8-frame
    clips (no spec of the last built tokenizer shared by the process)."""
    base = REPO / "recipes/base.yaml"
    recipe = tmp_path / "tiny_video.yaml"
    recipe.write_text(TINY.format(base=base, manifest=manifest, out=tmp_path / "run"))
    long = Trainer(load_config(recipe))
    short = Trainer(load_config(recipe, ["model.clip_frames=4", "model.fps=10.0"]))
    for trainer, frames in ((long, 8), (short, 4)):
        ev = trainer.evaluate()
        assert {x.shape[1] for x in ev.originals} == {frames}, frames
        assert trainer.dataset[(0, 0)].shape == (3, frames, 16, 16)
