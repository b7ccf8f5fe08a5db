"""Adversarial training: discriminator shapes, GAN / feature-matching losses against closed
forms, gradients reaching the right side, the recipe section's errors, tiny audio and image
runs, and exact resume with the discriminators in the checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmtok.audio.tokenizer import audio_tokenizer
from mmtok.errors import ConfigError
from mmtok.train import Trainer, load_config
from mmtok.train.adversarial import (
    AdversarialConfig,
    Adversary,
    adversarial_loss,
    discriminator_loss,
    feature_matching_loss,
)
from mmtok.train.checkpoints import DISC_NAME, DISC_OPTIMIZER_NAME, list_checkpoints
from mmtok.train.discriminators import (
    MultiPeriodDiscriminator,
    MultiResolutionSTFTDiscriminator,
    PatchDiscriminator,
)
from tests.test_train import _write_images
from tests.test_train_audio import _write_audio

REPO = Path(__file__).resolve().parents[1]


# --- discriminators ---------------------------------------------------------------------------
def _strided(n: int, times: int) -> int:
    """Length after ``times`` convolutions with kernel 5, stride 3, padding 2."""
    for _ in range(times):
        n = (n - 1) // 3 + 1
    return n


def test_multi_resolution_stft_shapes():
    torch.manual_seed(0)
    d = MultiResolutionSTFTDiscriminator(channels=2, width=4)
    out = d(torch.randn(3, 2, 4096))
    # frames 1 + T / hop (hop = n_fft / 4); bins n_fft / 2 + 1 halved three times (ceil)
    want = [(3, 1, 1 + 4096 // (n // 4), math.ceil((n // 2 + 1) / 8)) for n in (2048, 1024, 512)]
    assert [tuple(t.shape) for t in out.logits] == want
    assert len(out.features) == 3 * 5 and all(f.shape[:2] == (3, 4) for f in out.features)


def test_multi_period_shapes():
    torch.manual_seed(0)
    d = MultiPeriodDiscriminator(channels=1, width=4)
    out = d(torch.randn(2, 1, 1000))
    want = [(2, 1, _strided(math.ceil(1000 / p), 4), p) for p in (2, 3, 5, 7, 11)]
    assert [tuple(t.shape) for t in out.logits] == want
    widths = [4, 8, 16, 32, 32]
    assert [f.shape[1] for f in out.features] == widths * 5


@pytest.mark.parametrize("shape, batch", [((2, 3, 32, 48), 2), ((2, 3, 4, 16, 24), 8)])
def test_patch_shapes_image_and_video_frames(shape, batch):
    torch.manual_seed(0)
    d = PatchDiscriminator(3, width=4, layers=3)
    out = d(torch.rand(shape) * 2 - 1)
    h, w = shape[-2:]
    assert [tuple(t.shape) for t in out.logits] == [(batch, 1, h // 8, w // 8)]
    assert [f.shape[1] for f in out.features] == [4, 8, 16, 32]


@pytest.mark.parametrize("make, x", [
    (lambda: MultiResolutionSTFTDiscriminator(1, 4), torch.randn(3, 1, 2048)),
    (lambda: MultiPeriodDiscriminator(1, 4), torch.randn(3, 1, 999)),
    (lambda: PatchDiscriminator(3, 4), torch.randn(3, 3, 16, 16)),
])  # fmt: skip
def test_logits_do_not_depend_on_the_batch(make, x):
    torch.manual_seed(0)
    d = make()
    batched = d(x).logits
    for i in range(x.shape[0]):
        alone = d(x[i : i + 1]).logits
        pairs = zip(alone, batched, strict=True)
        assert all(torch.allclose(a[0], b[i], atol=1e-5) for a, b in pairs)


# --- losses -----------------------------------------------------------------------------------
REAL = [torch.tensor([2.0, 0.5, -1.0]), torch.tensor([[0.0]])]
FAKE = [torch.tensor([-2.0, 0.0, 0.5]), torch.tensor([[1.0]])]


def test_gan_losses_match_closed_forms():
    # hinge, map 1: relu(1 - r) = 0, .5, 2 -> 2.5/3; relu(1 + f) = 0, 1, 1.5 -> 2.5/3
    #        map 2: relu(1 - 0) = 1; relu(1 + 1) = 2
    assert discriminator_loss("hinge", REAL, FAKE).item() == pytest.approx((5 / 3 + 3) / 2)
    # lsgan, map 1: (r - 1)^2 = 1, .25, 4 -> 5.25/3; f^2 = 4, 0, .25 -> 4.25/3; map 2: 1 + 1
    assert discriminator_loss("lsgan", REAL, FAKE).item() == pytest.approx((9.5 / 3 + 2) / 2)
    assert adversarial_loss("hinge", FAKE).item() == pytest.approx((0.5 - 1.0) / 2)
    # (f - 1)^2 = 9, 1, .25 -> 10.25/3; map 2: 0
    assert adversarial_loss("lsgan", FAKE).item() == pytest.approx(10.25 / 3 / 2)


def test_feature_matching_closed_form_and_zero_for_identical():
    real = [torch.ones(2, 4), torch.full((3,), 2.0)]
    fake = [torch.zeros(2, 4), torch.ones(3)]
    assert feature_matching_loss(real, fake).item() == pytest.approx((1.0 + 0.5) / 2)
    torch.manual_seed(0)
    feats = [torch.randn(2, 4, 5), torch.randn(2, 8)]
    assert feature_matching_loss(feats, [f.clone() for f in feats]).item() == 0.0


def test_step_updates_only_discriminators_and_generator_loss_reaches_only_recon():
    torch.manual_seed(0)
    tok = audio_tokenizer(hop=8, width=4, latent_dim=8, res_depth=1, codebook_size=16)
    cfg = AdversarialConfig(discriminators=["mrstft", "mpd"], channels=4, lr=1e-2)
    adv = Adversary(cfg, tok, torch.device("cpu"))
    x, recon = torch.randn(2, 1, 2048) * 0.3, torch.randn(2, 1, 2048, requires_grad=True)
    before = {k: v.clone() for k, v in adv.discriminator.state_dict().items()}
    terms = adv.step(x, recon)
    assert set(terms) == {"adv_d"} and recon.grad is None
    after = adv.discriminator.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    total, g_terms = adv.generator_loss(x, recon)
    total.backward()
    assert set(g_terms) == {"adv_g", "adv_fm"} and g_terms["adv_fm"] > 0
    assert recon.grad is not None and recon.grad.abs().sum() > 0
    assert all(p.grad is None for p in adv.discriminator.parameters())
    assert all(p.requires_grad for p in adv.discriminator.parameters())  # unfrozen again
    want = cfg.weight * g_terms["adv_g"] + cfg.feature_matching * g_terms["adv_fm"]
    assert total.item() == pytest.approx(want.item(), rel=1e-6)


# --- recipes ----------------------------------------------------------------------------------
AUDIO = """base: {base}
model: {{modality: audio, hop: 8, width: 4, latent_dim: 8, res_depth: 1, codebook_size: 16,
         sample_rate: 8000}}
data: {{manifest: {manifest}, eval_split: holdout, crop: 2048, batch_size: 2, repeats: 2,
        eval_size: null}}
train: {{steps: 4, warmup_steps: 1, ckpt_every: 2, log_every: 1, out_dir: {out},
         progress: false, tensorboard: false, plots: false}}
loss: {{l1: 1.0, stft: 1.0, quantizer: 1.0}}
adversarial: {{discriminators: [mrstft, mpd], loss: lsgan, weight: 1.0, feature_matching: 2.0,
              start_step: 1, lr: 1.0e-3, betas: [0.5, 0.9], channels: 4}}
"""

IMAGE = """base: {base}
model: {{modality: image, downsample: 4, hidden: 8, latent_dim: 8, codebook_size: 16}}
data: {{manifest: {manifest}, crop: 16, batch_size: 4, repeats: 4, eval_size: 24}}
train: {{steps: 6, warmup_steps: 2, ckpt_every: 3, log_every: 1, out_dir: {out},
         progress: false, tensorboard: false, plots: false}}
adversarial: {{discriminators: [patch], loss: hinge, weight: 0.5, feature_matching: 1.0,
              start_step: 2, lr: 1.0e-3, channels: 4}}
"""


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adv")
    return {"audio": _write_audio(root / "music"), "image": _write_images(root / "images")}


def _recipe(tmp_path: Path, manifests: dict[str, Path], modality: str, name: str,
            extra: str = "") -> Path:  # fmt: skip
    template = AUDIO if modality == "audio" else IMAGE
    text = template.format(base=REPO / "recipes/base.yaml", manifest=manifests[modality],
                           out=tmp_path / name)  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(text + extra)
    return path


@pytest.mark.parametrize("modality", ["audio", "image"])
def test_tiny_run_trains_with_adversarial_terms(modality, manifests, tmp_path):
    trainer = Trainer(load_config(_recipe(tmp_path, manifests, modality, "run")))
    result = trainer.fit()
    h, steps, start = trainer.state.history, result.steps, trainer.cfg.adversarial.start_step
    assert len(h["loss"]) == steps
    for key in ("adv_d", "adv_g", "adv_fm"):  # logged from start_step on, finite
        assert len(h[key]) == steps - start and all(math.isfinite(v) for v in h[key])
    assert all(math.isfinite(v) for v in h["loss"]) and math.isfinite(result.eval.psnr)
    ckpt = list_checkpoints(tmp_path / "run/checkpoints")[-1]
    saved = load_file(str(ckpt / DISC_NAME))
    live = trainer.adversary.discriminator.state_dict()
    assert saved.keys() == live.keys() and all(torch.equal(saved[k], live[k]) for k in saved)
    assert (ckpt / DISC_OPTIMIZER_NAME).is_file()


def test_section_absent_is_reconstruction_only(manifests, tmp_path):
    path = _recipe(tmp_path, manifests, "image", "plain")
    text = path.read_text()
    path.write_text(text[: text.index("adversarial:")])
    cfg = load_config(path)
    assert cfg.adversarial is None and "adversarial" not in cfg.to_dict()
    assert Trainer(cfg).adversary is None
    with_section = load_config(_recipe(tmp_path, manifests, "image", "adv"))
    assert with_section.to_dict()["adversarial"]["discriminators"] == ["patch"]
    assert load_config(path, ["adversarial.discriminators=[patch]"]).adversarial.weight == 1.0


@pytest.mark.parametrize("modality, override, needles", [
    ("audio", "adversarial.discriminators=[mrstft, nope]", ["'nope'", "mpd, mrstft"]),
    ("audio", "adversarial.discriminators=[patch]", ["'patch'", "audio"]),
    ("image", "adversarial.discriminators=[mpd]", ["'mpd'", "known: patch"]),
    ("image", "adversarial.discriminators=[]", ["at least one"]),
    ("image", "adversarial.discriminators=[patch, patch]", ["twice"]),
    ("image", "adversarial.lsgan=1", ["adversarial.lsgan", "known:"]),
    ("image", "adversarial.loss=wgan", ["adversarial.loss", "'hinge'"]),
    ("image", "adversarial.weight=-1", ["adversarial.weight", ">= 0"]),
    ("image", "adversarial.start_step=1.5", ["adversarial.start_step", "int"]),
    ("image", "adversarial.lr=0", ["adversarial.lr", "> 0"]),
    ("image", "adversarial.betas=[0.5]", ["adversarial.betas", "2 items"]),
])  # fmt: skip
def test_bad_adversarial_section_is_a_config_error(modality, override, needles, manifests,
                                                    tmp_path):  # fmt: skip
    path = _recipe(tmp_path, manifests, modality, "bad")
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    for needle in needles:
        assert needle in str(info.value)


# --- exact resume -----------------------------------------------------------------------------
def _disc_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return trainer.adversary.discriminator.state_dict()


def _opt_tensors(trainer: Trainer) -> list[torch.Tensor]:
    state = trainer.adversary.optimizer.state_dict()["state"]
    return [v for s in state.values() for v in s.values()]


@pytest.mark.parametrize("modality, stop", [("image", 3), ("audio", 2)])
def test_resume_with_discriminators_matches_uninterrupted_run(modality, stop, manifests, tmp_path):
    straight = Trainer(load_config(_recipe(tmp_path, manifests, modality, "a")))
    straight.fit()
    cfg_b = load_config(_recipe(tmp_path, manifests, modality, "b"))
    assert stop > cfg_b.adversarial.start_step  # the discriminators have trained before the stop
    Trainer(cfg_b).fit(stop_at=stop)
    resumed = Trainer(cfg_b, resume="latest")
    assert resumed.state.step == stop
    resumed.fit()
    assert straight.state.history == resumed.state.history
    wa = load_file(str(tmp_path / "a/final/model.safetensors"))
    wb = load_file(str(tmp_path / "b/final/model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    da, db = _disc_state(straight), _disc_state(resumed)
    assert da.keys() == db.keys() and all(torch.equal(da[k], db[k]) for k in da)
    oa, ob = _opt_tensors(straight), _opt_tensors(resumed)
    assert len(oa) == len(ob) > 0 and all(torch.equal(a, b) for a, b in zip(oa, ob, strict=True))


def test_resume_from_reconstruction_only_checkpoint_starts_fresh_discriminators(
    manifests, tmp_path, capsys
):
    path = _recipe(tmp_path, manifests, "image", "warm")
    text = path.read_text()
    path.write_text(text[: text.index("adversarial:")])
    Trainer(load_config(path)).fit(stop_at=3)
    path.write_text(text)
    resumed = Trainer(load_config(path), resume="latest")
    assert resumed.state.step == 3 and "start fresh" in capsys.readouterr().out
    resumed.fit()
    assert len(resumed.state.history["adv_d"]) == 3  # steps 4-6 only (history of 0-3 kept)


# --- two processes ----------------------------------------------------------------------------
def _ddp_worker(rank: int, world: int, recipe: str, out: str) -> None:
    from safetensors.torch import save_file

    trainer = Trainer(load_config(recipe, ["train.steps=4", "train.ckpt_every=0"]))
    assert trainer.fit().ranks_in_sync
    disc = {f"disc.{k}": v for k, v in _disc_state(trainer).items()}
    state = {**trainer.model.state_dict(), **disc}
    save_file({k: v.contiguous() for k, v in state.items()}, f"{out}/rank{rank}.safetensors")


def test_two_processes_keep_discriminators_in_sync(manifests, tmp_path):
    from tests.dist_utils import run_distributed

    recipe = _recipe(tmp_path, manifests, "image", "ddp")
    run_distributed(_ddp_worker, 2, str(recipe), str(tmp_path))
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2))
    assert any(k.startswith("disc.") for k in r0)
    assert r0.keys() == r1.keys() and all(torch.equal(r0[k], r1[k]) for k in r0)
