"""Trainer: one process or ``torchrun`` DistributedDataParallel, with exact resume.

Legend: B global batch, R processes (ranks), b = B / R per rank, C, S as in mmtok.tokenizer.

Each step: every rank takes its b samples of the global batch (BatchPlan), runs the tokenizer,
backpropagates the weighted losses; DDP averages the gradients (so every rank applies the same
AdamW update) and the quantizer all-reduces its codebook statistics itself, so parameters and
codebook buffers stay identical on every rank without broadcasting buffers. Rank 0 alone logs,
evaluates, checkpoints and writes the final model. With an ``adversarial`` recipe section an
``Adversary`` (mmtok.train.adversarial) updates its discriminators each step and adds its
terms to the loss. Resume restores weights, codebook buffers, optimizer, discriminators, RNG
states of every rank, the data position and the step: the continued loss curve equals the
uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from mmtok.checkpoint import save_pretrained
from mmtok.errors import CheckpointError, ConfigError
from mmtok.metrics import psnr
from mmtok.tokenizer import eval_mode, state_digest
from mmtok.train import checkpoints as ckpt
from mmtok.train.adversarial import Adversary
from mmtok.train.config import Config
from mmtok.train.data import BatchPlan, iterate_batches
from mmtok.train.losses import LossOutput, TrainingLoss
from mmtok.train.modalities import MODALITIES, build_model
from mmtok.train.report import RunLog, plot_losses, plot_usage

EXAMPLES = 6  # held-out samples shown in the reconstruction grid


@dataclass
class EvalResult:
    """Held-out metrics. psnr: mean per-sample PSNR (dB, peak-to-peak 2 for [-1, 1] data);
    usage: mean fraction of codes hit per codebook; histograms: per-codebook counts [K]."""

    psnr: float
    usage: float
    used_codes: int
    total_codes: int
    samples: int
    histograms: dict[str, Tensor] = field(default_factory=dict)
    originals: list[Tensor] = field(default_factory=list)
    recons: list[Tensor] = field(default_factory=list)


@dataclass
class RunResult:
    steps: int
    seconds: float
    out_dir: Path
    eval: EvalResult | None = None
    ranks_in_sync: bool = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _Dist:
    """Rank, world size and device; starts the process group under torchrun if needed."""

    def __init__(self, device: str) -> None:
        cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        self.owns_group = False
        if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            dist.init_process_group("nccl" if cuda else "gloo")
            self.owns_group = True
        active = dist.is_initialized()
        self.rank = dist.get_rank() if active else 0
        self.world = dist.get_world_size() if active else 1
        local = int(os.environ.get("LOCAL_RANK", self.rank))
        self.device = torch.device("cuda", local) if cuda else torch.device("cpu")
        self.main = self.rank == 0

    def all_gather(self, t: Tensor) -> list[Tensor]:
        """``t`` of every rank (CPU tensors out); ``[t]`` in a single process."""
        if self.world == 1:
            return [t]
        t = t.to(self.device) if dist.get_backend() == "nccl" else t
        out = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(out, t)
        return [o.cpu() for o in out]

    def mean(self, t: Tensor) -> Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t = t / self.world
        return t

    def broadcast_object(self, obj: object) -> object:
        """Rank 0's ``obj`` (picklable) on every rank; ``obj`` itself in a single process."""
        if self.world == 1:
            return obj
        box = [obj]
        device = self.device if dist.get_backend() == "nccl" else None
        dist.broadcast_object_list(box, src=0, device=device)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()


class Trainer:
    """Builds model, data and optimizer from a Config; ``fit`` trains, evaluates, saves.

    Args:
        cfg: the resolved recipe.
        resume: a checkpoint folder, "latest" (the newest under ``out_dir/checkpoints``, or a
            fresh start when there is none) or None.
    """

    def __init__(self, cfg: Config, resume: str | os.PathLike | None = None) -> None:
        self.cfg, t = cfg, cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.dist = _Dist(t.device)
        if cfg.data.batch_size % self.dist.world:
            raise ConfigError(f"data.batch_size {cfg.data.batch_size} is not divisible by "
                              f"the {self.dist.world} processes")  # fmt: skip
        seed_everything(t.seed)
        self.modality = MODALITIES[cfg.model.modality]
        self.model = build_model(cfg.model.modality, cfg.model.args).to(self.dist.device)
        self.spec = self.modality.spec(self.model)  # what the data needs from this model
        self.loss = TrainingLoss(cfg.loss, self.model)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=t.lr, betas=t.betas,
                                           weight_decay=t.weight_decay)  # fmt: skip
        self.adversary = None  # discriminators + their optimizer, with an adversarial section
        if cfg.adversarial is not None:
            self.adversary = Adversary(cfg.adversarial, self.model, self.dist.device)
        self.dataset = self.modality.train_set(cfg.data, t.seed, self.spec)
        self.plan = BatchPlan(len(self.dataset), cfg.data.batch_size // self.dist.world,
                              self.dist.world, self.dist.rank, t.seed)  # fmt: skip
        self.state = ckpt.TrainState()
        self.resumed_from: Path | None = None
        if resume is not None:
            self._resume(resume)
        self.net = self.model
        if self.dist.world > 1:
            ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False,
                                               find_unused_parameters=False)  # fmt: skip
        self._eval_data: list[Tensor] | None = None

    @property
    def out_dir(self) -> Path:
        return self.cfg.out_dir

    # --- resume --------------------------------------------------------------------------
    def _resume(self, resume: str | os.PathLike) -> None:
        if str(resume) == "latest":
            # rank 0 decides, so every rank loads the same step even if a checkpoint appears
            # (or is removed) while the processes start
            root = self.out_dir / "checkpoints"
            found = ckpt.list_checkpoints(root) if self.dist.main else []
            choice = self.dist.broadcast_object(str(found[-1]) if found else None)
            if choice is None:
                if self.dist.main:
                    print(f"no checkpoint under {root}; starting fresh")
                return
            path = Path(choice)
            if not ckpt.is_complete(path):
                raise CheckpointError(f"--resume: rank {self.dist.rank} cannot read checkpoint "
                                      f"{str(path)!r}, the newest one rank 0 sees; out_dir must "
                                      "be on storage shared by every node")  # fmt: skip
        else:
            path = Path(resume)
            if not path.is_dir():
                raise CheckpointError(f"--resume: checkpoint folder {str(path)!r} does not exist")
        self.state, rng = ckpt.load_checkpoint(path, self.model, self.optimizer,
                                               self._discriminator_state())  # fmt: skip
        if len(rng) != self.dist.world and self.dist.main:
            print(f"note: checkpoint written by {len(rng)} processes, resuming with "
                  f"{self.dist.world}: same global batches, equal up to rounding")  # fmt: skip
        ckpt.set_rng_state(rng[self.dist.rank % len(rng)])
        self.resumed_from = path
        if self.dist.main:
            print(f"resumed from {path} at step {self.state.step}")

    # --- one step ------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based): linear warmup, then constant or cosine."""
        t = self.cfg.train
        if step < t.warmup_steps:
            return t.lr * (step + 1) / t.warmup_steps
        if t.lr_schedule == "constant":
            return t.lr
        progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * cosine)

    def train_step(self, x: Tensor) -> dict[str, float]:
        """One optimisation step on this rank's ``x`` ``[b, C, *S]``; globally averaged logs."""
        lr = self.lr_at(self.state.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        x = x.to(self.dist.device)
        out = self.net(x)
        losses = self._with_adversarial(x, out.recon, self.loss(x, out))
        self.optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        clip = self.cfg.train.grad_clip or float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        names = ["loss", *losses.terms]
        local = torch.stack([losses.total.detach(), *(v.detach() for v in losses.terms.values())])
        values = dict(zip(names, self.dist.mean(local.float().cpu()).tolist(), strict=True))
        return {**values, **out.quant.metrics, "lr": lr, "grad_norm": float(grad_norm)}

    def _with_adversarial(self, x: Tensor, recon: Tensor, losses: LossOutput) -> LossOutput:
        """``losses`` plus, from ``adversarial.start_step`` on, a discriminator update and the
        generator's adversarial + feature-matching terms (logged as ``adv_*``)."""
        if self.adversary is None or not self.adversary.active(self.state.step):
            return losses
        d_terms = self.adversary.step(x, recon)
        g_total, g_terms = self.adversary.generator_loss(x, recon)
        return LossOutput(losses.total + g_total, {**losses.terms, **g_terms, **d_terms})

    def _discriminator_state(self) -> ckpt.DiscriminatorState | None:
        if self.adversary is None:
            return None
        return ckpt.DiscriminatorState(self.adversary.discriminator, self.adversary.optimizer)

    # --- evaluation ----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> EvalResult:
        """Held-out PSNR and codebook usage (the quantizer's usage buffers, reset first)."""
        if self._eval_data is None:
            self._eval_data = self.modality.eval_set(self.cfg.data, self.spec)
        self.model.quantizer.reset_usage()
        scores, originals, recons = [], [], []
        with eval_mode(self.model):
            for x in self._eval_data:
                y = self.model(x[None].to(self.dist.device)).recon.clamp(-1, 1)[0].cpu()
                scores.append(psnr(x, y))
                if len(originals) < EXAMPLES:
                    originals.append(x)
                    recons.append(y)
        hist = {n: h.cpu() for n, h in self.model.quantizer.usage_histograms().items()}
        used = sum(int((h > 0).sum()) for h in hist.values())
        total = sum(h.numel() for h in hist.values())
        frac = sum(float((h > 0).float().mean()) for h in hist.values()) / max(1, len(hist))
        return EvalResult(sum(scores) / len(scores), frac, used, total, len(scores), hist,
                          originals, recons)  # fmt: skip

    # --- checkpoints / sync --------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint (rank 0) with every rank's RNG state; collective under DDP."""
        state = ckpt.rng_state()
        rng = [dict(zip(state, parts, strict=True)) for parts in
               zip(*(self.dist.all_gather(v) for v in state.values()), strict=True)]  # fmt: skip
        path = None
        if self.dist.main:
            path = ckpt.save_checkpoint(self.out_dir / "checkpoints", self.model, self.optimizer,
                                        self.state, rng, self.cfg.to_dict(),
                                        self.cfg.train.keep_checkpoints,
                                        self._discriminator_state())  # fmt: skip
        self.dist.barrier()
        return path

    def ranks_in_sync(self) -> bool:
        """True when every rank holds the same weights and codebook buffers (a digest check)."""
        digest = torch.tensor(list(bytes.fromhex(state_digest(self.model)[:16])), dtype=torch.int64)
        return all(torch.equal(d, digest) for d in self.dist.all_gather(digest))

    # --- the loop ------------------------------------------------------------------------
    def fit(self, stop_at: int | None = None) -> RunResult:
        """Train to ``train.steps`` (or stop early after step ``stop_at`` with a checkpoint,
        as if interrupted), then evaluate, plot and save ``out_dir/final`` (rank 0)."""
        t, start = self.cfg.train, time.perf_counter()
        end = min(t.steps, stop_at) if stop_at is not None else t.steps
        if self.dist.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            recipe = yaml.safe_dump(self.cfg.to_dict(), sort_keys=False)
            (self.out_dir / "recipe.yaml").write_text(recipe)
        main, step = self.dist.main, self.state.step
        log = RunLog(self.out_dir, t.steps, step, main, t.progress, t.tensorboard)
        batches = iterate_batches(self.dataset, self.plan, self.state.epoch, self.state.batch,
                                  self.cfg.data.workers)  # fmt: skip
        timed_out = False
        try:
            while self.state.step < end and not timed_out:
                epoch, index, x = next(batches)
                values = self.train_step(x)
                self.state.step += 1
                self.state.epoch, self.state.batch = epoch, index + 1
                self.state.record(values)
                timed_out = self._out_of_time(start)
                self._after_step(log, values, self.state.step if timed_out else end)
        finally:
            batches.close()
        result = RunResult(self.state.step, time.perf_counter() - start, self.out_dir)
        if self.state.step >= t.steps or timed_out:
            if timed_out and self.dist.main:
                log.write(f"train.max_seconds {t.max_seconds:g} reached at step {self.state.step}"
                          f" of {t.steps}: evaluating and saving this model as final")  # fmt: skip
            result = self._finish(log, result)
        log.close()
        self.dist.close()
        return result

    def _out_of_time(self, start: float) -> bool:
        """True once ``train.max_seconds`` have passed (rank 0 decides, so all ranks stop at
        the same step)."""
        limit = self.cfg.train.max_seconds
        if limit is None:
            return False
        return bool(self.dist.broadcast_object(time.perf_counter() - start > limit))

    def _after_step(self, log: RunLog, values: dict[str, float], end: int) -> None:
        step, t = self.state.step, self.cfg.train
        log.step(values)
        if step % t.log_every == 0 or step == end:
            log.scalars("train", step, values)
        if self.dist.main and t.eval_every and step % t.eval_every == 0 and step < t.steps:
            result = self.evaluate()
            log.scalars("eval", step, {"psnr": result.psnr, "usage": result.usage})
            log.write(f"step {step}: held-out PSNR {result.psnr:.2f} dB, usage {result.usage:.1%}")
        stopping_early = step == end and step < t.steps
        # the last step gets a checkpoint too, so a later run can extend train.steps
        if stopping_early or (t.ckpt_every and (step % t.ckpt_every == 0 or step == t.steps)):
            self.save_checkpoint()

    def _finish(self, log: RunLog, result: RunResult) -> RunResult:
        result.ranks_in_sync = self.ranks_in_sync()
        if self.dist.main:
            result.eval = ev = self.evaluate()
            log.scalars("eval", self.state.step, {"psnr": ev.psnr, "usage": ev.usage})
            save_pretrained(self.model, self.out_dir / "final")
            if self.cfg.train.plots:
                self._plots(ev)
            summary = {"steps": result.steps, "seconds": round(result.seconds, 1),
                       "processes": self.dist.world, "heldout_psnr_db": round(ev.psnr, 3),
                       "heldout_samples": ev.samples, "codebook_usage": round(ev.usage, 4),
                       "used_codes": ev.used_codes, "total_codes": ev.total_codes,
                       "ranks_in_sync": result.ranks_in_sync,
                       "steps_planned": self.cfg.train.steps}  # fmt: skip
            (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
            log.write(f"held-out PSNR {ev.psnr:.2f} dB over {ev.samples} samples, codebook usage "
                      f"{ev.usage:.1%} ({ev.used_codes}/{ev.total_codes} codes); "
                      f"final model: {self.out_dir / 'final'}")  # fmt: skip
            if not result.ranks_in_sync:
                log.write("warning: ranks ended with different weights")
        self.dist.barrier()
        return result

    def _plots(self, ev: EvalResult) -> None:
        plots = self.out_dir / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        plot_losses(self.state.history, list(self.loss.weights), plots / "loss.png")
        if ev.histograms:
            plot_usage(ev.histograms, plots / "codebook_usage.png")
        path = plots / "reconstructions.png"
        self.modality.plot_examples(ev.originals, ev.recons, path, self.spec)


def train(cfg: Config, resume: str | os.PathLike | None = None) -> RunResult:
    """Build a Trainer for ``cfg`` (resuming if asked) and run it to the end."""
    return Trainer(cfg, resume).fit()
