"""Trainer: recipes (includes, overrides, key/type errors), losses, data, exact resume, CLI, DDP."""

from __future__ import annotations

import importlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

from mmtok.audio.tokenizer import audio_tokenizer
from mmtok.checkpoint import load_pretrained
from mmtok.errors import ConfigError
from mmtok.image.tokenizer import image_tokenizer
from mmtok.quantization import QuantizerOutput
from mmtok.tokenizer import TokenizerOutput
from mmtok.train import Trainer, load_config, register_loss
from mmtok.train.__main__ import main
from mmtok.train.checkpoints import list_checkpoints, rng_state, set_rng_state
from mmtok.train.data import BatchPlan, list_files
from mmtok.train.image import SUFFIXES, ImageCrops
from mmtok.train.losses import LOSSES, TrainingLoss, available_losses
from tests.dist_utils import run_distributed

REPO = Path(__file__).resolve().parents[1]


def _write_images(folder: Path, n_train: int = 6, n_heldout: int = 2) -> Path:
    """Smooth random RGB images of varied sizes + manifest.jsonl; returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(0)
    rows = []
    for i in range(n_train + n_heldout):
        h, w = 24 + 4 * (i % 3), 28 + 4 * (i % 2)
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        phase = g.uniform(0, 6, size=3)
        img = np.stack([np.sin(4 * xx + 3 * yy + p) for p in phase], -1) * 100 + 127
        img = np.clip(img + g.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        name = f"img{i}.png"
        Image.fromarray(img).save(folder / name)
        split = "heldout" if i >= n_train else "train"
        rows.append({"path": name, "width": w, "height": h, "channels": 3, "split": split})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


TINY = """base: {base}
model: {{modality: image, downsample: 4, hidden: 8, latent_dim: 8, codebook_size: 16}}
data: {{manifest: {manifest}, crop: 16, batch_size: 4, repeats: 4, eval_size: 24}}
train: {{steps: 6, warmup_steps: 2, ckpt_every: 3, log_every: 1, out_dir: {out},
         progress: false, tensorboard: false, plots: false}}
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return _write_images(tmp_path_factory.mktemp("images")).parent


def _recipe(tmp_path: Path, manifest: Path, name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.yaml"
    text = TINY.format(base=REPO / "recipes/base.yaml", manifest=manifest, out=tmp_path / name)
    path.write_text(text)
    return path


# --- config ---------------------------------------------------------------------------------
def test_includes_nest_and_overrides_parse_as_yaml(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/root.yaml").write_text("train: {steps: 7, lr: 0.5}\nloss: {l1: 1.0}\n")
    (tmp_path / "mid.yaml").write_text("base: sub/root.yaml\ntrain: {steps: 8}\n")
    (tmp_path / "top.yaml").write_text("base: mid.yaml\ndata: {crop: 32}\nmodel: {hidden: 16}\n")
    overrides = ["train.seed=3", "train.lr=2e-3", "train.betas=[0.8, 0.95]", "data.resize=null",
                 "model.codebook_size=256", "loss.l2=2"]  # fmt: skip
    cfg = load_config(tmp_path / "top.yaml", overrides)
    assert (cfg.train.steps, cfg.train.lr, cfg.train.seed) == (8, 2e-3, 3)
    assert cfg.train.betas == (0.8, 0.95) and cfg.data.resize is None and cfg.data.crop == 32
    assert cfg.model.args == {"hidden": 16, "codebook_size": 256}
    assert cfg.loss == {"l1": 1.0, "l2": 2.0} and isinstance(cfg.loss["l2"], float)
    assert cfg.name == "top" and cfg.out_dir == Path("runs/top")
    again = tmp_path / "again.yaml"
    again.write_text(json.dumps(cfg.to_dict()))
    assert load_config(again).to_dict() == cfg.to_dict()


@pytest.mark.parametrize(
    "base_text, recipe_text, overrides, needles",
    [
        ("train: {stepz: 1}\n", "", [], ["'train.stepz'", "base.yaml"]),
        ("", "data: {crops: 3}\n", [], ["'data.crops'", "recipe.yaml"]),
        ("", "", ["train.bogus=1"], ["'train.bogus'", "command line"]),
        ("", "model: {codebok_size: 8}\n", [], ["'model.codebok_size'", "recipe.yaml"]),
        ("", "loss: {stft: 1.0}\n", [], ["'loss.stft'", "recipe.yaml"]),
        ("extra: 1\n", "", [], ["'extra'", "base.yaml"]),
        ("", "", ["train.steps=abc"], ["train.steps", "command line", "int"]),
        ("", "train: {steps: 1.5}\n", [], ["train.steps", "recipe.yaml"]),
        ("", "train: {lr: fast}\n", [], ["train.lr", "float"]),
        ("", "", ["model.codebook_size=true"], ["model.codebook_size", "int"]),
        ("", "train: {lr_schedule: linear}\n", [], ["train.lr_schedule", "cosine"]),
        ("", "train: {betas: [0.9]}\n", [], ["train.betas", "2 items"]),
        ("", "model: {modality: smell}\n", [], ["model.modality", "image"]),
        ("", "train: {steps: 0}\n", [], ["train.steps", "> 0"]),
        ("", "train: 3\n", [], ["train", "mapping"]),
        ("", "", ["trainsteps"], ["section.key=value"]),
    ],
)
def test_bad_keys_and_types_name_key_and_file(tmp_path, base_text, recipe_text, overrides, needles):
    (tmp_path / "base.yaml").write_text(base_text)
    (tmp_path / "recipe.yaml").write_text("base: base.yaml\n" + recipe_text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "recipe.yaml", overrides)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


def test_missing_and_circular_includes(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nope.yaml\n")
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "c.yaml")


def test_shipped_recipes_load(tmp_path):
    """Each shipped recipe builds its model (the factory's own checks run, not only the
    loader's), makes every loss term for it, and its resolved form (what a run saves as
    recipe.yaml) loads back to the same config."""
    from mmtok.train.modalities import build_model

    for path in sorted((REPO / "recipes").glob("*.yaml")):
        cfg = load_config(path)
        model = build_model(cfg.model.modality, cfg.model.args)
        assert model.modality == cfg.model.modality, path.name
        assert set(TrainingLoss(cfg.loss, model).weights) <= set(cfg.loss), path.name
        saved = tmp_path / path.name
        saved.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        again = load_config(saved)
        assert (again.model, again.data, again.train, again.loss) == (
            cfg.model, cfg.data, cfg.train, cfg.loss), path.name  # fmt: skip


# --- losses ---------------------------------------------------------------------------------
def test_loss_registry_and_weights():
    @register_loss("tv_test", modalities=("image",))
    def tv(x, recon):
        return (recon[..., 1:] - recon[..., :-1]).abs().mean()

    try:
        assert "tv_test" in available_losses("image") and "tv_test" not in available_losses("audio")
        x, recon = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
        q = QuantizerOutput(torch.zeros(1), torch.zeros(1, dtype=torch.long), torch.tensor(0.5))
        image = image_tokenizer(downsample=4, hidden=8, latent_dim=8, codebook_size=16)
        loss = TrainingLoss({"l1": 1.0, "l2": 0.0, "quantizer": 2.0, "tv_test": 0.5}, image)
        out = loss(x, TokenizerOutput(recon, q))
        assert set(out.terms) == {"l1", "quantizer", "tv_test"}  # weight 0 is skipped
        want = (recon - x).abs().mean() + 2 * 0.5 + 0.5 * tv(x, recon)
        torch.testing.assert_close(out.total, want)
        with pytest.raises(ConfigError, match="tv_test"):
            TrainingLoss({"tv_test": 1.0}, audio_tokenizer(hop=8, width=4, latent_dim=4))
    finally:
        LOSSES.pop("tv_test")


# --- data -----------------------------------------------------------------------------------
def test_manifest_folder_splits_and_seeded_crops(data_dir, tmp_path):
    train = list_files(data_dir / "manifest.jsonl", "train", SUFFIXES)
    held = list_files(data_dir / "manifest.jsonl", "heldout", SUFFIXES)
    assert len(train) == 6 and len(held) == 2 and not set(train) & set(held)
    folder_held = list_files(data_dir, "heldout", SUFFIXES)  # folder: every 10th, at least 1
    assert len(folder_held) == 1 and len(list_files(data_dir, "train", SUFFIXES)) == 7
    with pytest.raises(ConfigError, match="'val'"):
        list_files(data_dir / "manifest.jsonl", "val", SUFFIXES)
    ds = ImageCrops(train, crop=16, repeats=2, seed=1)
    assert len(ds) == 12 and ds[(0, 3)].shape == (3, 16, 16)
    assert torch.equal(ds[(0, 3)], ds[(0, 3)]) and not torch.equal(ds[(0, 3)], ds[(1, 3)])
    assert ds[(0, 3)].min() >= -1 and ds[(0, 3)].max() <= 1


def test_batch_plan_splits_the_global_batch_over_ranks():
    single = BatchPlan(40, 8, 1, 0, seed=5).epoch(2)
    ranks = [BatchPlan(40, 4, 2, r, seed=5).epoch(2) for r in range(2)]
    assert len(single) == len(ranks[0]) == 5
    for b, keys in enumerate(single):
        assert sorted(keys) == sorted(ranks[0][b] + ranks[1][b])
    with pytest.raises(ConfigError, match="repeats"):
        BatchPlan(3, 4, 1, 0, seed=0)


def test_rng_state_round_trip():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.standard_normal()  # leave cached gaussians behind
    state = rng_state()
    want = (random.random(), random.gauss(0, 1), np.random.standard_normal(), torch.rand(3))
    set_rng_state(state)
    got = (random.random(), random.gauss(0, 1), np.random.standard_normal(), torch.rand(3))
    assert want[:3] == got[:3] and torch.equal(want[3], got[3])


# --- training -------------------------------------------------------------------------------
def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final/model.safetensors"))


def test_resume_matches_uninterrupted_run(data_dir, tmp_path):
    uninterrupted = Trainer(load_config(_recipe(tmp_path, data_dir / "manifest.jsonl", "a")))
    straight = uninterrupted.fit()
    cfg_b = load_config(_recipe(tmp_path, data_dir / "manifest.jsonl", "b"))
    first = Trainer(cfg_b).fit(stop_at=3)  # as if killed after the step-3 checkpoint
    assert first.eval is None and not (tmp_path / "b/final").exists()
    resumed = Trainer(cfg_b, resume="latest")
    assert resumed.state.step == 3
    second = resumed.fit()
    hist_a = uninterrupted.state.history
    assert len(hist_a["loss"]) == 6 and hist_a == resumed.state.history
    wa, wb = _final_weights(tmp_path / "a"), _final_weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert second.eval.psnr == straight.eval.psnr and second.steps == 6


def test_cli_run_outputs_and_errors(data_dir, tmp_path, capsys):
    recipe = _recipe(tmp_path, data_dir / "manifest.jsonl", "cli")
    argv = [str(recipe), "train.steps=4", "train.ckpt_every=1", "train.tensorboard=true",
            "train.plots=true", "train.keep_checkpoints=2", "model.quantizer=rvq",
            "model.num_quantizers=2"]  # fmt: skip
    assert main(argv) == 0
    out = tmp_path / "cli"
    assert "held-out PSNR" in capsys.readouterr().out
    model = load_pretrained(out / "final")
    assert model.codebook_size == 16 and model.num_codebooks == 2
    kept = [p.name for p in list_checkpoints(out / "checkpoints")]
    assert kept == ["step_00000003", "step_00000004"]
    for name in ("loss.png", "codebook_usage.png", "reconstructions.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and 0 < summary["codebook_usage"] <= 1
    assert main([*argv, "train.steps=5", "--resume"]) == 0  # extends the run by one step
    assert "resumed from" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["steps"] == 5
    assert main([str(recipe), "train.stepz=4"]) == 2
    assert "'train.stepz'" in capsys.readouterr().err


def _ddp_worker(rank: int, world: int, recipe: str, out: str) -> None:
    trainer = Trainer(load_config(recipe, ["train.steps=4", "train.ckpt_every=0"]))
    result = trainer.fit()
    assert result.ranks_in_sync
    save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()},
              f"{out}/rank{rank}.safetensors")  # fmt: skip


def test_two_processes_end_with_identical_weights(data_dir, tmp_path):
    recipe = _recipe(tmp_path, data_dir / "manifest.jsonl", "ddp")
    run_distributed(_ddp_worker, 2, str(recipe), str(tmp_path))
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2))
    assert r0.keys() == r1.keys() and all(torch.equal(r0[k], r1[k]) for k in r0)
    assert bool(r0["quantizer.codebook.initialized"]) and int(r0["quantizer.codebook.step"]) == 4
    assert (tmp_path / "ddp/final/model.safetensors").is_file()


def test_max_seconds_ends_the_run_with_a_final_model(tmp_path, data_dir) -> None:
    """train.max_seconds: 0 stops after the first step, evaluates and saves final and a
    resumable checkpoint; summary.json says how far it got of the planned steps."""
    out = tmp_path / "run"
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY.format(base=REPO / "recipes" / "base.yaml",
                                  manifest=data_dir / "manifest.jsonl", out=out))  # fmt: skip
    result = Trainer(load_config(recipe, ["train.max_seconds=0"])).fit()
    assert result.steps == 1
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["steps"], summary["steps_planned"]) == (1, 6)
    assert (out / "final" / "model.safetensors").is_file()
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step_00000001"]
    resumed = Trainer(load_config(recipe), resume="latest").fit()
    assert resumed.steps == 6


def test_training_lists_every_file_prep_accepts(tmp_path):
    """Training reads the suffixes of ``mmtok.media.SUFFIXES`` (one list for prep, the CLI and
    training): .gif images, .opus and .m4a audio are listed, and an .opus file trains."""
    import soundfile as sf

    from mmtok.media import SUFFIXES as MEDIA
    from mmtok.train.audio import AudioSpec, train_set
    from mmtok.train.data import DataConfig

    for modality in MEDIA:
        folder = tmp_path / modality
        (folder / "train").mkdir(parents=True)
        for suffix in sorted(MEDIA[modality]):
            (folder / "train" / f"f{suffix}").write_bytes(b"")
        module = importlib.import_module(f"mmtok.train.{modality}")
        listed = list_files(folder, "train", module.SUFFIXES)
        assert {p.suffix for p in listed} == MEDIA[modality], modality

    music = tmp_path / "music" / "train"
    music.mkdir(parents=True)
    t = np.arange(24000) / 48000
    sf.write(music / "tone.opus", 0.3 * np.sin(2 * np.pi * 440 * t), 48000, format="OGG",
             subtype="OPUS")  # fmt: skip
    data = DataConfig(manifest=str(music.parent), crop=2048, eval_size=None)
    crops = train_set(data, 0, AudioSpec(sample_rate=16000, channels=1))
    assert crops[(0, 0)].shape == (1, 2048) and float(crops[(0, 0)].abs().max()) > 0.1
