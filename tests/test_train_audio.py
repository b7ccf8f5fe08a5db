"""Audio training: seeded crops, held-out clips, losses vs independent maths, exact resume,
held-out metrics, config errors, the shipped recipes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from mmtok.audio.tokenizer import audio_tokenizer
from mmtok.checkpoint import load_pretrained
from mmtok.errors import ConfigError
from mmtok.metrics import mel_distance, si_snr, snr
from mmtok.quantization import QuantizerOutput
from mmtok.tokenizer import TokenizerOutput
from mmtok.train import Trainer, load_config
from mmtok.train.audio import (
    AudioCrops,
    AudioSpec,
    eval_set,
    evaluate_heldout,
    plot_examples,
)
from mmtok.train.losses import TrainingLoss, available_losses
from mmtok.train.modalities import build_model

REPO = Path(__file__).resolve().parents[1]
FILE_RATE, RATE = 16000, 8000  # files are written at 16 kHz, the tiny model reads 8 kHz


def _write_audio(folder: Path, n_train: int = 3, n_heldout: int = 1) -> Path:
    """Decaying chords with a little noise (stereo FLAC at 16 kHz) + manifest.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(0)
    rows = []
    for i in range(n_train + n_heldout):
        n = FILE_RATE * (1 + i % 2) // 2 if i else 3000  # 0.19 s (shorter than a crop), 0.5, 1 s
        t = np.arange(n) / FILE_RATE
        f0 = g.uniform(110, 440)
        tone = sum(np.sin(2 * np.pi * f0 * k * t + g.uniform(0, 6)) / k for k in (1, 2, 3))
        x = 0.4 * tone * np.exp(-3 * t) + 0.01 * g.standard_normal(n)
        name = f"clip{i}.flac"
        sf.write(folder / name, np.stack([x, 0.8 * x], 1), FILE_RATE, subtype="PCM_16")
        split = "holdout" if i >= n_train else "train"
        rows.append({"path": name, "duration_s": n / FILE_RATE, "split": split})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return _write_audio(tmp_path_factory.mktemp("music"))


TINY = """base: {base}
model: {{modality: audio, hop: 8, width: 4, latent_dim: 8, res_depth: 1, codebook_size: 16,
         sample_rate: {rate}}}
data: {{manifest: {manifest}, eval_split: holdout, crop: 2048, batch_size: 2, repeats: 2,
        eval_size: null}}
train: {{steps: 4, warmup_steps: 1, ckpt_every: 2, log_every: 1, out_dir: {out},
         progress: false, tensorboard: false, plots: false}}
loss: {{l1: 1.0, stft: 1.0, mel: 0.5, linf: 0.02, quantizer: 1.0}}
"""


def _recipe(tmp_path: Path, manifest: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    base = REPO / "recipes/base.yaml"
    path.write_text(TINY.format(base=base, rate=RATE, manifest=manifest, out=tmp_path / name))
    return path


# --- data -----------------------------------------------------------------------------------
def test_crops_are_seeded_by_key(manifest):
    files = [manifest.parent / f"clip{i}.flac" for i in range(3)]
    spec = AudioSpec(sample_rate=RATE, channels=1)
    a = AudioCrops(files, spec, crop=2048, repeats=2, seed=1)
    b = AudioCrops(files, spec, crop=2048, repeats=2, seed=1)
    # 3000 / 16000 / 8000 samples at 16 kHz -> 1500 / 8000 / 4000 at 8 kHz, mono
    assert [c.shape for c in a.clips] == [(1, 1500), (1, 8000), (1, 4000)]
    assert len(a) == (1 + 3 + 1) * 2  # max(1, T // crop) slots per file, 2 repeats
    x = a[(0, 7)]
    assert x.shape == (1, 2048) and x.dtype == torch.float32
    assert torch.equal(x, b[(0, 7)]) and not torch.equal(a[(0, 7)], a[(1, 7)])
    short = [a[(e, 0)] for e in range(6)]  # the 1500-sample file sits at a random offset in silence
    assert all(s.shape == (1, 2048) and (s != 0).sum() <= 1500 for s in short)
    assert len({int((s != 0).float().argmax()) for s in short}) > 1
    flipped = AudioCrops(files[1:2], spec, crop=8000, flip=True, seed=0)  # whole file each time
    signs = {int(torch.sign((flipped[(e, 0)] * flipped.clips[0]).sum())) for e in range(8)}
    assert signs == {-1, 1}  # polarity inversion is the audio "flip"
    stereo = AudioCrops(files[:1], AudioSpec(RATE, channels=2), crop=2048, flip=False)
    assert stereo[(0, 0)].shape == (2, 2048)


def test_heldout_clips_whole_or_centred(manifest):
    cfg = load_config(REPO / "recipes/audio_hop32.yaml", [f"data.manifest={manifest}"])
    (whole,) = eval_set(cfg.data, AudioSpec(RATE, 1))
    assert whole.shape == (1, 8000)  # clip3: 1 s
    cfg.data.eval_size = 4096
    (centre,) = eval_set(cfg.data, AudioSpec(RATE, 1))
    assert torch.equal(centre, whole[:, 1952 : 1952 + 4096])


# --- losses ---------------------------------------------------------------------------------
def _np_stft_mag(x: np.ndarray, n_fft: int) -> np.ndarray:
    """|STFT| ``[rows, F, N]``: centred (reflect pad n/2), periodic Hann, hop n/4."""
    pad = np.pad(x, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    hop, window = n_fft // 4, 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    starts = range(0, pad.shape[1] - n_fft + 1, hop)
    frames = np.stack([pad[:, s : s + n_fft] * window for s in starts], -1)  # [rows, n, N]
    return np.abs(np.fft.rfft(frames, axis=1))


def _np_mel_fbank(rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """HTK triangular filters ``[F, M]`` from 0 Hz to rate / 2, unnormalised."""
    freqs = np.linspace(0, rate // 2, n_fft // 2 + 1)
    mel_pts = np.linspace(0, 2595 * np.log10(1 + (rate / 2) / 700), n_mels + 2)
    hz = 700 * (10 ** (mel_pts / 2595) - 1)
    fb = np.zeros((len(freqs), n_mels))
    for m in range(n_mels):
        lo, mid, hi = hz[m], hz[m + 1], hz[m + 2]
        fb[:, m] = np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return fb


def test_audio_losses_match_independent_maths():
    tok = audio_tokenizer(
        hop=8, width=4, latent_dim=8, res_depth=1, codebook_size=16, sample_rate=RATE
    )  # the mel term is made at this tokenizer's rate
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 3000, generator=g) - 0.5
    recon = x + 0.05 * torch.randn(x.shape, generator=g)
    xs, rs = x[:, 0].double().numpy(), recon[:, 0].double().numpy()

    stft_want = 0.0
    for n_fft in (512, 1024, 2048):
        a, b = (np.maximum(_np_stft_mag(v, n_fft), 1e-5) for v in (xs, rs))
        convergence = np.linalg.norm(a - b) / np.linalg.norm(a)
        stft_want += convergence + np.abs(np.log(a) - np.log(b)).mean()
    fbank = _np_mel_fbank(RATE, 1024, 80)
    mel = [np.log(np.maximum(np.einsum("fm,rfn->rmn", fbank, _np_stft_mag(v, 1024)), 1e-5))
           for v in (xs, rs)]  # fmt: skip
    err = np.sort(np.abs(xs - rs), axis=1)[:, ::-1]
    want = {"stft": stft_want / 3, "mel": np.abs(mel[0] - mel[1]).mean(),
            "linf": err[:, :2048].mean(), "l1": np.abs(xs - rs).mean()}  # fmt: skip

    assert {"stft", "mel", "linf"} <= set(available_losses("audio"))
    assert "stft" not in available_losses("image") and "mel" not in available_losses("video")
    weights = {"l1": 1.0, "stft": 0.5, "mel": 2.0, "linf": 0.02, "quantizer": 1.0}
    q = QuantizerOutput(torch.zeros(1), torch.zeros(1, dtype=torch.long), torch.tensor(0.25))
    out = TrainingLoss(weights, tok)(x, TokenizerOutput(recon, q))
    for name, value in want.items():
        assert float(out.terms[name]) == pytest.approx(value, rel=2e-4), name
    total = sum(weights[n] * want[n] for n in want) + 0.25
    assert float(out.total) == pytest.approx(total, rel=2e-4)


def test_si_snr_matches_its_definition():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 4000, generator=g) - 0.5
    for noise, gain in ((0.01, 1.0), (0.2, 0.5)):
        y = gain * x + noise * torch.randn(x.shape, generator=g) + 0.1  # gain, noise and offset
        ref, est = x[0, 0].double() - x.mean(), y[0, 0].double() - y.mean()
        target = (est @ ref) / (ref @ ref) * ref
        want = 10 * math.log10(float(target @ target) / float((est - target) @ (est - target)))
        assert si_snr(x, y) == pytest.approx(want, abs=1e-3)
        plain = 10 * math.log10(float((x.double() ** 2).sum() / ((x - y).double() ** 2).sum()))
        assert snr(x, y) == pytest.approx(plain, abs=1e-6)
    # SI-SNR's optimal scale may be negative: it cannot see a polarity inversion, SNR can
    assert si_snr(x, -x) > 60 and snr(x, -x) == pytest.approx(10 * math.log10(1 / 4))


# --- training -------------------------------------------------------------------------------
def test_tiny_run_resumes_exactly_and_reports_heldout_metrics(manifest, tmp_path):
    a = Trainer(load_config(_recipe(tmp_path, manifest, "a")))
    assert a.dataset[(0, 0)].shape == (1, 2048) and a.model.sample_rate == RATE
    straight = a.fit()
    cfg_b = load_config(_recipe(tmp_path, manifest, "b"))
    assert Trainer(cfg_b).fit(stop_at=2).eval is None  # as if killed after the step-2 checkpoint
    resumed = Trainer(cfg_b, resume="latest")
    assert resumed.state.step == 2
    second = resumed.fit()
    assert len(a.state.history["loss"]) == 4 and a.state.history == resumed.state.history
    assert {"stft", "mel", "linf", "l1", "quantizer"} <= set(a.state.history)
    wa, wb = (load_file(str(tmp_path / r / "final/model.safetensors")) for r in "ab")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert second.eval.psnr == straight.eval.psnr and second.eval.samples == 1

    tok = load_pretrained(tmp_path / "a/final")
    report = evaluate_heldout(tok, load_config(tmp_path / "a.yaml").data)
    x = eval_set(load_config(tmp_path / "a.yaml").data, AudioSpec(RATE, 1))[0][None]
    y = tok.decode(tok.encode(x))
    assert report.si_snr_db == pytest.approx(si_snr(x, y), abs=1e-6)
    assert report.snr_db == pytest.approx(snr(x, y), abs=1e-9)
    assert report.mel_distance == pytest.approx(mel_distance(x, y, RATE), rel=1e-6)
    assert report.clips == 1 and report.seconds == pytest.approx(1.0)
    assert math.isfinite(report.mel_distance) and report.mel_distance > 0
    assert report.total_codes == 16 and 0 < report.used_codes <= 16
    assert report.token_rate == RATE / 8 and report.bitrate == RATE / 8 * math.log2(16)
    assert "SI-SNR" in report.text()
    from mmtok.train.heldout import main as heldout_cli  # python -m mmtok.train.audio

    args = [str(tmp_path / "a/final"), "--recipe", str(tmp_path / "a.yaml")]
    assert heldout_cli("audio", [*args, "--json", str(tmp_path / "heldout.json")]) == 0
    assert json.loads((tmp_path / "heldout.json").read_text())["si_snr_db"] == report.si_snr_db

    plot_examples([x[0]], [y[0]], tmp_path / "rec.png", AudioSpec(RATE, 1))
    assert (tmp_path / "rec.png").stat().st_size > 1000


# --- config errors --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["data.resize=256"], "data.resize"),
        (["data.crop=1024"], "data.crop"),
        (["data.eval_size=256"], "data.eval_size"),
        (["model.hop=24"], "power of two"),
        (["model.hidden=8"], "model.hidden"),
        (["loss.ssim=1.0"], "loss.ssim"),
        (["model.sample_rate=fast"], "model.sample_rate"),
    ],
)
def test_bad_audio_config_is_a_config_error(manifest, tmp_path, overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        cfg = load_config(_recipe(tmp_path, manifest, "bad"), overrides)
        Trainer(cfg)


def test_audio_losses_are_refused_for_images(tmp_path):
    with pytest.raises(ConfigError, match="loss.stft"):
        load_config(REPO / "recipes/image_small.yaml", ["loss.stft=1.0"])


def test_shipped_recipes_load_and_fit_5_mb():
    for hop in (8, 32, 128):
        cfg = load_config(REPO / f"recipes/audio_hop{hop}.yaml")
        assert cfg.model.modality == "audio" and cfg.data.crop >= 2048
        tok = build_model(cfg.model.modality, cfg.model.args)
        assert tok.hop == hop and tok.sample_rate == 22050 and tok.channels == 1
        size = sum(v.numel() * v.element_size() for v in tok.state_dict().values())
        assert size <= 5_000_000


def test_mel_ms_loss_is_the_heldout_mel_distance() -> None:
    """The ``mel_ms`` training term equals ``mmtok.metrics.mel_distance`` (the benchmark's
    number) on the same batch, and has a gradient."""
    from mmtok.train.losses import LOSSES

    tok = audio_tokenizer(hop=8, width=4, latent_dim=4, codebook_size=8, sample_rate=16000)
    rate = tok.sample_rate  # the rate the loss uses

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8192, generator=g) * 0.3
    y = (x + 0.05 * torch.randn(2, 1, 8192, generator=g)).requires_grad_(True)
    loss = LOSSES["mel_ms"].make(tok)(x, y)
    assert float(loss) == pytest.approx(mel_distance(x, y.detach(), rate), rel=1e-5)
    loss.backward()
    assert y.grad is not None and bool(torch.isfinite(y.grad).all())


def test_two_trainers_keep_their_own_sample_rate(manifest, tmp_path):
    """An 8 kHz trainer built before a 16 kHz one still reads, evaluates, plots and computes
    its mel losses at 8 kHz (no spec of the last built tokenizer shared by the process)."""
    from mmtok.audio.losses import mel_loss

    low = Trainer(load_config(_recipe(tmp_path, manifest, "low"), ["loss.mel_ms=1.0"]))
    high = Trainer(load_config(_recipe(tmp_path, manifest, "high"),
                               ["model.sample_rate=16000", "loss.mel_ms=1.0"]))  # fmt: skip
    for trainer, rate in ((low, RATE), (high, FILE_RATE)):
        ev = trainer.evaluate()
        assert [x.shape[-1] for x in ev.originals] == [rate], rate  # clip3 is 1 s long
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 1, 4096, generator=g) * 0.3
        y = x + 0.05 * torch.randn(x.shape, generator=g)
        q = QuantizerOutput(torch.zeros(1), torch.zeros(1, dtype=torch.long), torch.tensor(0.0))
        terms = trainer.loss(x, TokenizerOutput(y, q)).terms
        assert float(terms["mel"]) == pytest.approx(float(mel_loss(x, y, sample_rate=rate)))
        assert float(terms["mel_ms"]) == pytest.approx(mel_distance(x, y, rate), rel=1e-5)
