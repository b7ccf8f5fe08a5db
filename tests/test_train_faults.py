"""Scale-out and fault tolerance of the trainer: torchrun over 2 "nodes" equals one process,
SIGKILL + ``--resume`` equals an uninterrupted run, half-written checkpoints are never used.

Every run here uses ``train.threads: 1`` (and ``OMP_NUM_THREADS=1`` in subprocesses): on a
busy 2-core machine two threads per process run ~30x slower, and a fixed thread count keeps
the kernels, hence the results of different processes, bit-identical.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DistributedSampler

from mmtok.errors import CheckpointError
from mmtok.train import Trainer, load_config
from mmtok.train import checkpoints as ckpt
from mmtok.train import trainer as trainer_module
from mmtok.train.__main__ import main
from mmtok.train.data import BatchPlan
from tests.test_train import _write_images

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 150  # seconds; a hung collective fails the test instead of the whole session

RECIPE = """base: {base}
model: {{modality: image, downsample: 4, hidden: 8, latent_dim: 8, codebook_size: 16}}
data: {{manifest: {manifest}, crop: 16, batch_size: 4, repeats: 4, eval_size: 24}}
train: {{steps: 8, warmup_steps: 2, ckpt_every: 4, log_every: 1, out_dir: {out}, threads: 1,
         progress: false, tensorboard: false, plots: false}}
"""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return _write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(autouse=True)
def _restore_threads():
    """In-process runs set torch's thread count (train.threads); give the default back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _recipe(tmp_path: Path, manifest: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(RECIPE.format(base=REPO / "recipes/base.yaml", manifest=manifest,
                                  out=tmp_path / name))  # fmt: skip
    return path


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def _cli(*args: str, **popen) -> subprocess.Popen:
    """``python -m mmtok.train ARGS`` in a subprocess (the single-process command line)."""
    return subprocess.Popen([sys.executable, "-m", "mmtok.train", *args], cwd=REPO, env=_env(),
                            text=True, **popen)  # fmt: skip


def _torchrun(*args: str, log: Path, nodes: int = 2) -> list[subprocess.Popen]:
    """The torchrun command lines of docs/training.md on localhost: ``nodes`` launchers
    (``--nnodes``, ``--node_rank``, static rendezvous at ``--master_addr:--master_port``) of
    one process each, or for ``nodes=1`` one ``--standalone`` launcher of 2 processes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [sys.executable, "-m", "torch.distributed.run"]
    if nodes == 1:
        commands = [[*launch, "--standalone", "--nproc_per_node=2"]]
    else:
        commands = [[*launch, f"--nnodes={nodes}", f"--node_rank={node}", "--nproc_per_node=1",
                     "--master_addr=127.0.0.1", f"--master_port={port}"]
                    for node in range(nodes)]  # fmt: skip
    procs = []
    for node, cmd in enumerate(commands):
        out = open(log.with_suffix(f".node{node}.log"), "w")  # noqa: SIM115 (closed by the OS)
        procs.append(subprocess.Popen([*cmd, "-m", "mmtok.train", *args], cwd=REPO, env=_env(),
                                      stdout=out, stderr=subprocess.STDOUT, text=True))  # fmt: skip
    return procs


def _wait(procs: list[subprocess.Popen], log: Path) -> list[str]:
    """Wait for the launchers; their outputs, or a failure showing them."""
    codes: list[int | str] = []
    try:
        for p in procs:
            try:
                codes.append(p.wait(timeout=TIMEOUT))
            except subprocess.TimeoutExpired:  # fail with the logs (which step it hung at)
                codes.append(f"no exit after {TIMEOUT} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    texts = [log.with_suffix(f".node{n}.log").read_text() for n in range(len(procs))]
    assert codes == [0] * len(procs), f"launchers: {codes}\n" + "\n----\n".join(texts)
    return texts


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final/model.safetensors"))


# --- data: the global batch does not depend on the number of processes -------------------------
@pytest.mark.parametrize("size, batch", [(40, 8), (50, 4), (24, 12)])
def test_ranks_concatenated_are_the_single_process_batch(size, batch):
    single = BatchPlan(size, batch, 1, 0, seed=7)
    sampler = DistributedSampler(range(size), num_replicas=1, rank=0, shuffle=True, seed=7)
    sampler.set_epoch(3)  # one process keeps the DistributedSampler order
    keys = sum(single.epoch(3), [])
    assert keys == [(3, i) for i in list(sampler)[: len(keys)]]
    for world in (2, 4):
        if batch % world:
            continue
        plans = [BatchPlan(size, batch // world, world, r, seed=7) for r in range(world)]
        for epoch in (0, 3):
            ranks = [p.epoch(epoch) for p in plans]
            assert all(len(r) == single.batches_per_epoch() for r in ranks)
            for b, keys in enumerate(single.epoch(epoch)):  # identical, in the same order
                assert sum((r[b] for r in ranks), []) == keys


# --- torchrun: 2 nodes x 1 process == 1 process on the same global batch ----------------------
def test_torchrun_two_nodes_match_one_process_and_resume(manifest, tmp_path):
    """Same recipe, same command line: ``torchrun --nnodes=2 ... -m mmtok.train RECIPE`` (batch
    2 per rank) against ``Trainer`` in this process (batch 4). ``BatchPlan`` gives rank r the
    r-th half of every global batch, so the concatenated batch the quantizer sees (k-means seeds
    and dead-code restarts index it) is the single process's batch in the same order; DDP
    averages the gradients of the two halves (= the gradient of the mean over 4), and the EMA
    statistics are all-reduced. The runs differ only by float rounding (summation order); with
    the old interleaved DistributedSampler split the codebooks differed by ~3.7.
    Then both resume from their step-8 checkpoint to step 10, the 2-process run with
    ``torchrun --standalone --nproc_per_node=2 ... --resume`` (rank 0 picks the checkpoint and
    broadcasts its choice), and still agree."""
    recipe = _recipe(tmp_path, manifest, "multi")
    log = tmp_path / "torchrun"
    procs = _torchrun(str(recipe), log=log)
    single = Trainer(load_config(recipe, [f"train.out_dir={tmp_path / 'single'}"]))
    single.fit()  # runs while the two "nodes" do
    node0, node1 = _wait(procs, log)
    assert "held-out PSNR" in node0 and "held-out PSNR" not in node1  # rank 0 alone logs
    summary = (tmp_path / "multi/summary.json").read_text()
    assert '"processes": 2' in summary and '"ranks_in_sync": true' in summary
    trainer_pt = torch.load(tmp_path / "multi/checkpoints/step_00000008/trainer.pt",
                            weights_only=True)  # fmt: skip
    assert trainer_pt["world_size"] == 2 and len(trainer_pt["rng"]) == 2

    def compare(step: int, before: int) -> None:
        one, two = _weights(tmp_path / "single"), _weights(tmp_path / "multi")
        assert one.keys() == two.keys()
        for key in one:
            torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6, msg=key)
        assert int(two["quantizer.codebook.step"]) == step
        assert bool(two["quantizer.codebook.initialized"])
        # the tolerance is meaningful: the last steps moved the weights much further
        earlier = load_file(str(tmp_path / f"single/checkpoints/step_{before:08d}/model/"
                                "model.safetensors"))  # fmt: skip
        moved = max(float((one[k].double() - earlier[k].double()).abs().max())
                    for k in one if one[k].is_floating_point())  # fmt: skip
        assert moved > 1e-3

    compare(8, before=4)
    more = ["train.steps=10", "train.ckpt_every=2", "--resume"]
    procs = _torchrun(str(recipe), *more, log=log, nodes=1)
    assert main([str(recipe), f"train.out_dir={tmp_path / 'single'}", *more]) == 0
    (text,) = _wait(procs, log)
    assert text.count("resumed from") == 1 and "step_00000008 at step 8" in text
    compare(10, before=8)


# --- SIGKILL mid-run, then --resume ---------------------------------------------------------
STEPS = 48  # of the killed run; it is killed after step 7


def _progress(path: Path) -> int:
    """Steps done according to the tqdm bar in a run's stderr."""
    found = re.findall(rf"(\d+)/{STEPS} \[", path.read_text(errors="replace"))
    return int(found[-1]) if found else 0


def test_sigkill_mid_run_then_resume_equals_uninterrupted(manifest, tmp_path):
    """Kill ``python -m mmtok.train`` with SIGKILL once a checkpoint exists and a few more steps
    ran (tqdm shows every step with TQDM_MININTERVAL=0); the same command with ``--resume``
    ends with weights, codebook and loss history identical to an uninterrupted run."""
    recipe = _recipe(tmp_path, manifest, "run")
    args = [str(recipe), f"train.steps={STEPS}", "train.progress=true"]
    straight = _cli(*args, f"train.out_dir={tmp_path / 'straight'}", stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)  # fmt: skip
    err = tmp_path / "killed.err"
    with open(err, "w") as stderr:
        victim = subprocess.Popen(
            [sys.executable, "-m", "mmtok.train", *args], cwd=REPO, stderr=stderr,
            env=_env(TQDM_MININTERVAL="0"), stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT
        while _progress(err) < 7 and victim.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        seen = _progress(err)
        victim.send_signal(signal.SIGKILL)  # the step-4 checkpoint exists, steps 5-7 ran
        assert victim.wait(timeout=TIMEOUT) == -signal.SIGKILL, err.read_text()[-2000:]
    finally:
        if victim.poll() is None:
            victim.kill()
    assert 7 <= seen < STEPS and not (tmp_path / "run/final").exists()
    kept = ckpt.list_checkpoints(tmp_path / "run/checkpoints")
    assert kept and kept[-1].name < ckpt.step_dir(kept[-1].parent, STEPS).name
    last = int(kept[-1].name.removeprefix("step_"))

    resumed = _cli(*args, "--resume", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out, _ = resumed.communicate(timeout=TIMEOUT)
    assert resumed.returncode == 0 and f"resumed from {kept[-1]} at step {last}" in out, out
    assert straight.wait(timeout=TIMEOUT) == 0
    wa, wb = _weights(tmp_path / "straight"), _weights(tmp_path / "run")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    final = f"checkpoints/step_{STEPS:08d}/trainer.pt"
    ha = torch.load(tmp_path / "straight" / final, weights_only=True)["history"]
    hb = torch.load(tmp_path / "run" / final, weights_only=True)["history"]
    assert len(ha["loss"]) == STEPS and ha == hb


# --- half-written checkpoints ---------------------------------------------------------------
def test_resume_skips_half_written_checkpoints(manifest, tmp_path, capsys, monkeypatch):
    recipe = _recipe(tmp_path, manifest, "half")
    cfg = load_config(recipe, ["train.ckpt_every=2"])
    Trainer(cfg).fit(stop_at=4)  # as if killed after the step-4 checkpoint
    root = tmp_path / "half/checkpoints"
    good = ckpt.step_dir(root, 4)
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step_00000002", "step_00000004"]

    # a crash while writing step 6 (its temporary folder), a newer step folder missing its
    # weights and optimizer (e.g. a partial copy), and one holding a folder but no files
    shutil.copytree(good, root / ".step_00000006.k2j4d9a1")
    (root / ".step_00000006.k2j4d9a1/optimizer.pt").unlink()
    for name in (ckpt.TRAINER_NAME, ckpt.RECIPE_NAME, "model/config.json"):
        (root / "step_00000008" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(good / name, root / "step_00000008" / name)
    (root / "step_00000010/model").mkdir(parents=True)
    assert not ckpt.is_complete(root / "step_00000008")
    assert ckpt.list_checkpoints(root) == [ckpt.step_dir(root, 2), good]

    capsys.readouterr()
    assert main([str(recipe), "train.ckpt_every=2", "--resume"]) == 0
    assert f"resumed from {good} at step 4" in capsys.readouterr().out
    # the run's own checkpoints replaced the broken step-8 folder; leftovers are gone
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step_00000006", "step_00000008"]
    assert not list(root.glob(".step_*")) and (tmp_path / "half/final").is_dir()

    # an exception while writing leaves neither a step folder nor a temporary one
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    before = sorted(p.name for p in root.iterdir())
    trainer = Trainer(cfg, resume="latest")
    monkeypatch.setattr(ckpt.yaml, "safe_dump", interrupted)
    trainer.state.step = 9
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint()
    assert sorted(p.name for p in root.iterdir()) == before


def test_rank_without_the_checkpoint_fails_clearly(manifest, tmp_path, monkeypatch):
    """Checkpoints are written by rank 0; a rank that cannot read the one rank 0 picked (out_dir
    not on shared storage) stops with a CheckpointError instead of training from scratch."""
    recipe = _recipe(tmp_path, manifest, "shared")
    missing = str(tmp_path / "elsewhere/checkpoints/step_00000004")
    monkeypatch.setattr(trainer_module._Dist, "broadcast_object", lambda self, obj: missing)
    with pytest.raises(CheckpointError, match="shared"):
        Trainer(load_config(recipe), resume="latest")
