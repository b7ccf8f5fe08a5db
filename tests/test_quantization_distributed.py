"""Two gloo processes keep identical codebooks equal to one process on the concatenated batch."""

from __future__ import annotations

import torch

from mmtok.quantization import ResidualVQ, VectorQuantizer
from tests.dist_utils import run_distributed

STEPS, WORLD, PER_RANK = 6, 2, 96


def _batches():
    g = torch.Generator().manual_seed(123)
    return [torch.randn(WORLD * PER_RANK, 1, 8, generator=g) * 3 for _ in range(STEPS)]


def _build():
    torch.manual_seed(0)
    return {
        "vq": VectorQuantizer(8, 32, dead_code_threshold=2.0, decay=0.9),
        "vq_relative": VectorQuantizer(8, 32, dead_code_ratio=0.5, decay=0.9),  # from the
        # all-reduced counts: the same threshold on every rank
        "rvq": ResidualVQ(8, 16, 3, quantizer_dropout=1.0, dead_code_threshold=2.0),
    }


def _train(models, batches, rank, world):
    stages = []
    for x in batches:
        part = x.reshape(world, -1, 1, 8)[rank].reshape(1, -1, 8)  # this rank's rows, in order
        for name, q in models.items():
            q.train()
            out = q(part)
            if name == "rvq":
                stages.append(out.ids.shape[-1])
    return stages


def _worker(rank, world, out_dir):
    models = _build()
    stages = _train(models, _batches(), rank, world)
    state = {f"{n}.{k}": v for n, q in models.items() for k, v in q.state_dict().items()}
    state["stages"] = torch.tensor(stages)
    torch.save(state, f"{out_dir}/rank{rank}.pt")


def test_two_ranks_match_single_process(tmp_path):
    run_distributed(_worker, WORLD, str(tmp_path))
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"ranks differ on {k}"
    single = _build()
    stages = _train(single, _batches(), 0, 1)
    assert stages == r0["stages"].tolist() and len(set(stages)) > 1
    for n, q in single.items():
        for k, v in q.state_dict().items():
            torch.testing.assert_close(r0[f"{n}.{k}"], v, atol=1e-4, rtol=1e-4, msg=f"{n}.{k}")
