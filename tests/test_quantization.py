"""Quantizer core: invariants, hand-computed EMA maths, restarts, FSQ, residual VQ, health."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from mmtok.errors import ConfigError, InputError
from mmtok.quantization import (
    FSQ,
    Codebook,
    IdentityQuantizer,
    ResidualVQ,
    VectorQuantizer,
    bitrate,
    nearest_code,
)

QUANTIZERS = {
    "vq": lambda: VectorQuantizer(16, 64),
    "vq_lowdim": lambda: VectorQuantizer(16, 64, codebook_dim=4),
    "vq_cosine": lambda: VectorQuantizer(16, 64, cosine=True),
    "vq_learnable": lambda: VectorQuantizer(16, 64, ema=False),
    "rvq": lambda: ResidualVQ(16, 32, 4, quantizer_dropout=0.5),
    "fsq": lambda: FSQ(16, [8, 5, 5, 5]),
    "fsq_nodproj": lambda: FSQ(3, [4, 3, 7]),
}


def _train(q, x, steps=3):
    q.train()
    for _ in range(steps):
        q(x)
    q.eval()


def _trained(name):
    """QUANTIZERS[name] after 3 training steps on x ``[3, 50, D]``, in eval mode; (q, x)."""
    torch.manual_seed(0)
    q = QUANTIZERS[name]()
    x = torch.randn(3, 50, q.dim)
    _train(q, x)
    return q, x


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_quantized_equals_decode_of_ids(name):
    q, x = _trained(name)
    out = q(x)
    assert out.ids.dtype == torch.int64
    assert out.ids.shape == (3, 50, q.num_codebooks)
    assert int(out.ids.min()) >= 0 and int(out.ids.max()) < q.codebook_size
    assert torch.equal(out.quantized, q.decode_ids(out.ids))
    assert torch.equal(q(x).ids, out.ids)  # eval is deterministic


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_encode_equals_forward_ids(name):
    q, x = _trained(name)
    ids = q(x).ids
    q.reset_usage()
    assert torch.equal(q.encode(x), ids)
    hist = q.usage_histograms()  # the eval encode counts nothing
    assert hist and all(int(h.sum()) == 0 for h in hist.values())
    for n_q in range(1, q.num_codebooks + 1):  # a prefix of the stages, as forward gives
        assert torch.equal(q.encode(x, n_q=n_q), q(x, n_q=n_q).ids)


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_usage_histograms_count_what_forward_emits(name):
    """reset_usage / usage_histograms: the interface the trainer reads usage through."""
    q, x = _trained(name)
    q.reset_usage()
    ids = torch.cat([q(x).ids, q(x[:1]).ids])  # [4, 50, Q]
    hist = q.usage_histograms()
    names = [f"stage{i}" for i in range(q.num_codebooks)] if name == "rvq" else ["codebook"]
    assert list(hist) == names
    for i, h in enumerate(hist.values()):
        assert h.dtype == torch.int64
        assert torch.equal(h, torch.bincount(ids[..., i].flatten(), minlength=q.codebook_size))
    hist["codebook" if name != "rvq" else "stage0"].add_(1)  # a copy: the counts stay
    assert int(next(iter(q.usage_histograms().values())).sum()) == ids[..., 0].numel()


@pytest.mark.parametrize("name", ["vq", "vq_lowdim", "rvq", "fsq"])
def test_gradient_reaches_input(name):
    torch.manual_seed(0)
    q = QUANTIZERS[name]()
    q.train()
    x = torch.randn(2, 40, q.dim, requires_grad=True)
    out = q(x)
    (out.quantized.square().sum() + out.loss).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_straight_through_gradient_is_identity():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 16, beta=0.0)
    q.train()
    x = torch.randn(2, 10, 8, requires_grad=True)
    g = torch.randn(2, 10, 8)
    (q(x).quantized * g).sum().backward()
    torch.testing.assert_close(x.grad, g)


def test_commitment_loss_is_beta_mse():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 16, beta=0.37, dead_code_threshold=0.0)
    q.train()
    x = torch.randn(2, 30, 8)
    q(x)  # k-means init happens here
    codes_before = q.codebook.embed.clone()
    out = q(x)
    ids = out.ids[..., 0]
    expected = 0.37 * ((x - codes_before[ids]) ** 2).mean()
    torch.testing.assert_close(out.loss, expected)


def test_learnable_codebook_loss_adds_codebook_term():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 16, ema=False, beta=0.25, dead_code_threshold=0.0, init="normal")
    q.train()
    x = torch.randn(2, 30, 8)
    codes = q.codebook.embed.detach().clone()
    out = q(x)
    mse = ((x - codes[out.ids[..., 0]]) ** 2).mean()
    torch.testing.assert_close(out.loss, 1.25 * mse)
    out.loss.backward()
    assert q.codebook.embed.grad is not None


def test_ema_update_matches_hand_computation():
    cb = Codebook(3, 2, decay=0.9, eps=1e-5, init="normal", dead_code_threshold=0.0)
    cb.embed.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    cb.embed_sum.copy_(cb.embed.clone())
    cb.cluster_size.fill_(1.0)
    x = torch.tensor([[0.1, 0.0], [0.9, 1.2], [1.1, 0.8], [0.0, -0.1]])
    ids = cb.search(x)
    assert ids.tolist() == [0, 1, 1, 0]
    cb.update_(x, ids)
    counts = torch.tensor([2.0, 2.0, 0.0])
    sums = torch.tensor([[0.1, -0.1], [2.0, 2.0], [0.0, 0.0]])
    n_k = 0.9 * 1.0 + 0.1 * counts
    s_k = 0.9 * torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]) + 0.1 * sums
    total = n_k.sum()
    smoothed = (n_k + 1e-5) / (total + 3 * 1e-5) * total
    torch.testing.assert_close(cb.cluster_size, n_k)
    torch.testing.assert_close(cb.embed_sum, s_k)
    torch.testing.assert_close(cb.embed, s_k / smoothed[:, None])


def test_restart_replaces_exactly_the_dead_codes():
    torch.manual_seed(0)
    cb = Codebook(8, 4, decay=0.5, init="normal", dead_code_threshold=0.5)
    cb.cluster_size.copy_(torch.tensor([5.0, 5, 5, 5, 5, 5, 0.2, 0.2]))
    x = torch.randn(64, 4) + 100.0  # far from every code: restarted codes come from x
    ids = torch.zeros(64, dtype=torch.long)
    ids[32:] = 1
    before = cb.embed.clone()
    cb.update_(x, ids)
    # after the EMA step codes 2..7 have count < 0.5? 2..5: 2.5, 6..7: 0.1 -> dead = {6, 7}
    changed = ~torch.isclose(cb.embed, before).all(1)
    assert changed[6] and changed[7]
    restarted = {k for k in range(8) if (cb.embed[k] - x).abs().sum(1).min() == 0}
    assert restarted == {6, 7}  # exactly the dead codes became rows of x, no live code did
    for k in (6, 7):  # the restarted codes are rows of x, EMA state reset
        assert (cb.embed[k] - x).abs().sum(1).min() == 0
        assert cb.cluster_size[k] == 0.5
        torch.testing.assert_close(cb.embed_sum[k], cb.embed[k] * 0.5)
    for k in (2, 3, 4, 5):  # live but unused codes are untouched by the restart
        assert cb.cluster_size[k] == pytest.approx(2.5)


def _restarted_after_update(cb: Codebook, counts: list[float], x: Tensor, ids: Tensor) -> set[int]:
    """Codes ``cb.update_`` restarts from ``counts`` (EMA state) and the batch ``x`` / ``ids``:
    the codes that became a row of ``x`` (x is far from every code, so EMA moves never do)."""
    cb.cluster_size.copy_(torch.tensor(counts))
    cb.update_(x, ids)
    return {k for k in range(cb.codebook_size) if (cb.embed[k] - x).abs().sum(1).min() == 0}


def test_default_restart_threshold_is_relative_to_the_mean_count():
    """Default: dead when the EMA count < 0.25 x the mean EMA count per code, so doubling the
    batch (and the EMA counts) restarts the same codes; an absolute threshold does not."""
    torch.manual_seed(0)
    x = torch.randn(16, 4) + 100.0  # far from every code: restarted codes come from x
    ids = torch.tensor([0] * 8 + [1] * 4 + [2] * 3 + [3])
    counts = [8.0, 4, 3, 1, 0.8, 0.5, 0.3, 0.1]
    # after the EMA step (decay 0.5): [8, 4, 3, 1, .4, .25, .15, .05], mean 2.11 -> thr 0.53
    restarted = {}
    for scale in (1, 2):
        for kind, thr in (("relative", None), ("absolute", 0.5)):
            torch.manual_seed(1)
            cb = Codebook(8, 4, decay=0.5, init="normal", dead_code_threshold=thr)
            xs, ids_s = x.repeat(scale, 1), ids.repeat(scale)
            got = _restarted_after_update(cb, [c * scale for c in counts], xs, ids_s)
            restarted[kind, scale] = got
            if kind == "relative":
                n_k = 0.5 * torch.tensor(counts) * scale + 0.5 * torch.bincount(ids_s, minlength=8)
                limit = 0.25 * n_k.mean()
                assert got == set(torch.nonzero(n_k < limit).flatten().tolist())
                for k in got:  # restarted at the threshold
                    torch.testing.assert_close(cb.cluster_size[k], limit)
    assert restarted["relative", 1] == restarted["relative", 2] == {4, 5, 6, 7}
    assert restarted["absolute", 1] == {4, 5, 6, 7} and restarted["absolute", 2] == {6, 7}


def test_restart_thresholds_validate_and_zero_disables():
    with pytest.raises(ConfigError, match="dead_code_threshold"):
        Codebook(8, 4, dead_code_threshold=-1.0)
    with pytest.raises(ConfigError, match="dead_code_ratio"):
        Codebook(8, 4, dead_code_ratio=-0.1)
    x, ids = torch.randn(4, 4) + 100.0, torch.zeros(4, dtype=torch.long)
    for kw in ({"dead_code_ratio": 0.0}, {"dead_code_threshold": 0.0}, {}):
        cb = Codebook(8, 4, decay=0.5, init="normal", **kw)
        restarted = _restarted_after_update(cb, [1.0] + [0.0] * 7, x, ids)
        assert restarted == (set(range(1, 8)) if not kw else set())  # the check can fail


def test_kmeans_init_not_redone_after_load(monkeypatch):
    torch.manual_seed(0)
    q = VectorQuantizer(8, 16)
    q.train()
    q(torch.randn(4, 64, 8))
    state = {k: v.clone() for k, v in q.state_dict().items()}
    assert bool(state["codebook.initialized"])
    torch.manual_seed(1)
    fresh = VectorQuantizer(8, 16, dead_code_threshold=0.0)
    fresh.load_state_dict(state)
    fresh.train()
    calls = []
    monkeypatch.setattr(fresh.codebook, "kmeans_init_", lambda x: calls.append(x))
    fresh(torch.randn(4, 64, 8))
    assert calls == []
    unloaded = VectorQuantizer(8, 16)
    monkeypatch.setattr(unloaded.codebook, "kmeans_init_", lambda x: calls.append(x))
    unloaded.train()
    unloaded(torch.randn(4, 64, 8))
    assert len(calls) == 1  # the check can fail: a fresh layer does initialise
    assert int(fresh.codebook.step) == int(state["codebook.step"]) + 1


def test_kmeans_init_fits_clusters():
    torch.manual_seed(0)
    centers = torch.randn(8, 4) * 10
    x = (centers.repeat_interleave(50, 0) + 0.01 * torch.randn(400, 4)).unsqueeze(0)
    q = VectorQuantizer(4, 8, dead_code_threshold=0.0, kmeans_iters=20, decay=0.0)
    q.train()
    q.codebook.kmeans_init_(x[0])
    e = q.codebook.embed
    ids = torch.cdist(x[0], e).argmin(1)
    for k in ids.unique().tolist():  # converged Lloyd: each code is the mean of its points
        torch.testing.assert_close(e[k], x[0][ids == k].mean(0), atol=1e-3, rtol=1e-4)
    sampled = VectorQuantizer(4, 8, init="data")
    sampled.codebook.kmeans_init_(x[0])

    def sse(codes):
        return torch.cdist(x[0], codes).min(1).values.square().sum()

    assert sse(e) <= sse(sampled.codebook.embed)


@pytest.mark.parametrize("levels", [[2], [3], [2, 3], [8, 5, 5, 5], [4, 4, 4], [7, 2, 6]])
def test_fsq_index_code_round_trip(levels):
    q = FSQ(len(levels), levels)
    ids = torch.arange(q.codebook_size)
    codes = q.ids_to_codes(ids)
    assert torch.unique(codes, dim=0).shape[0] == q.codebook_size
    assert torch.equal(q.digits_to_ids(codes * q._half), ids)
    assert codes.abs().max() <= 1.0


def test_fsq_never_builds_codebook():
    q = FSQ(8, [16] * 8)  # K = 2^32: a table would need 128 GiB
    assert q.codebook_size == 2**32
    x = torch.randn(1, 10, 8)
    out = q(x)
    assert out.ids.max() < 2**32 and out.metrics["used_codes"] == 10
    torch.testing.assert_close(q.ids_to_codes(out.ids[..., 0]) * q._half, q._digits(x))
    assert torch.equal(q.decode_ids(out.ids), out.quantized)


def test_residual_error_decreases_with_stages():
    torch.manual_seed(0)
    q = ResidualVQ(16, 64, 6)
    x = torch.randn(4, 256, 16)
    _train(q, x, steps=5)
    errors = [F.mse_loss(q(x, n_q=n).quantized, x).item() for n in range(1, 7)]
    assert all(a > b for a, b in itertools.pairwise(errors)), errors


def test_residual_prefix_decode_and_n_q():
    torch.manual_seed(0)
    q = ResidualVQ(16, 32, 4)
    x = torch.randn(2, 64, 16)
    _train(q, x)
    full = q(x)
    for n in range(1, 5):
        part = q(x, n_q=n)
        assert torch.equal(part.ids, full.ids[..., :n])
        assert torch.equal(q.decode_ids(full.ids[..., :n]), part.quantized)
    q.train()
    assert q(x, n_q=2).ids.shape[-1] == 2  # honoured in train mode, no dropout draw


def test_residual_dropout_varies_stages_in_training():
    torch.manual_seed(0)
    q = ResidualVQ(8, 16, 4, quantizer_dropout=1.0)
    q.train()
    seen = {q(torch.randn(1, 32, 8)).ids.shape[-1] for _ in range(30)}
    assert seen == {1, 2, 3, 4}
    q.eval()
    assert q(torch.randn(1, 32, 8)).ids.shape[-1] == 4


def test_bitrate():
    assert bitrate(75.0, 8, 1024) == 75 * 8 * 10
    assert ResidualVQ(8, 1024, 8).bitrate(75.0, n_q=2) == 75 * 2 * 10


@pytest.mark.parametrize("cosine", [False, True])
def test_chunked_search_equals_full_distance_matrix(cosine):
    torch.manual_seed(0)
    x, e = torch.randn(3000, 32), torch.randn(500, 32)
    if cosine:
        x, e = F.normalize(x, dim=1), F.normalize(e, dim=1)
    expected = (x @ e.t()).argmax(1) if cosine else torch.cdist(x.double(), e.double()).argmin(1)
    for chunk in (4 << 10, 1 << 20, 1 << 30):
        assert torch.equal(nearest_code(x, e, cosine=cosine, chunk_bytes=chunk), expected)


def test_search_is_batch_invariant():
    torch.manual_seed(0)
    q = VectorQuantizer(16, 128)
    x = torch.randn(8, 100, 16)
    _train(q, x)
    ids = q(x).ids
    for i in range(8):
        assert torch.equal(q(x[i : i + 1]).ids, ids[i : i + 1])


def test_autocast_bf16_keeps_fp32_codebook():
    torch.manual_seed(0)
    q = VectorQuantizer(16, 64)
    x = torch.randn(2, 64, 16)
    _train(q, x)
    ref = q(x).ids
    q.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(x.bfloat16())
        q.eval()
        ids = q(x).ids
    assert q.codebook.embed.dtype == torch.float32
    assert q.codebook.embed_sum.dtype == torch.float32
    assert out.quantized.dtype == torch.bfloat16
    assert torch.equal(ids, ref)


def test_metrics_every_forward_and_usage_histogram():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 32)
    q.train()
    out = q(torch.randn(2, 64, 8))
    assert {"perplexity", "used_codes", "dead_codes", "drift"} <= set(out.metrics)
    assert all(isinstance(v, float) for v in out.metrics.values())
    q.eval()
    q.reset_usage()
    ids = q(torch.randn(2, 64, 8)).ids
    assert int(q.codebook.usage.sum()) == 128
    assert torch.equal(q.codebook.usage, torch.bincount(ids.flatten(), minlength=32))


def test_identity_quantizer():
    q = IdentityQuantizer(8)
    x = torch.randn(2, 5, 8)
    out = q(x)
    assert out.quantized is x and out.ids.shape == (2, 5, 0)
    assert torch.equal(q.encode(x), out.ids) and q.usage_histograms() == {}
    q.reset_usage()
    with pytest.raises(InputError):
        q.decode_ids(out.ids)


def test_bad_inputs_raise_typed_errors():
    q = VectorQuantizer(8, 16)
    with pytest.raises(InputError, match=r"\[B, N, 8\]"):
        q(torch.randn(2, 8))
    with pytest.raises(InputError, match="float"):
        q(torch.ones(1, 2, 8, dtype=torch.long))
    with pytest.raises(InputError, match=r"\[0, 16\)"):
        q.decode_ids(torch.full((1, 2, 1), 16))
    with pytest.raises(InputError, match="n_q"):
        ResidualVQ(8, 16, 2)(torch.randn(1, 2, 8), n_q=3)
    with pytest.raises(ConfigError):
        VectorQuantizer(8, 16, codebook_dim=9)
    with pytest.raises(ConfigError):
        FSQ(8, [1, 4])


def _clustered(n_clusters, dim, n, gen):
    centers = torch.randn(n_clusters, dim, generator=gen) * 4.0
    labels = torch.randint(n_clusters, (n,), generator=gen)
    return centers[labels] + 0.05 * torch.randn(n, dim, generator=gen)


def _health_run(q, steps, gen, centers_seed=0):
    opt = torch.optim.Adam(q.parameters(), lr=1e-2) if list(q.parameters()) else None
    q.train()
    for _ in range(steps):
        x = _clustered(256, 16, 2048, torch.Generator().manual_seed(centers_seed))
        x = x[torch.randperm(2048, generator=gen)].unsqueeze(0)
        out = q(x)
        if opt is not None:
            opt.zero_grad()
            out.loss.backward()
            opt.step()
    q.eval()
    q.reset_usage()
    q(_clustered(256, 16, 8192, torch.Generator().manual_seed(centers_seed)).unsqueeze(0))
    return (q.codebook.usage > 0).float().mean().item()


def test_codebook_health_on_256_clusters():
    torch.manual_seed(0)
    ours = _health_run(VectorQuantizer(16, 256), 60, torch.Generator().manual_seed(1))
    seed_style = VectorQuantizer(16, 256, ema=False, init="uniform", dead_code_threshold=0.0)
    seed = _health_run(seed_style, 60, torch.Generator().manual_seed(1))
    print(f"codes used on held-out data: mmtok {ours:.1%}, seed-style {seed:.1%}")
    assert ours >= 0.90
    assert seed < ours


@pytest.mark.parametrize("name", ["vq", "vq_lowdim", "fsq", "identity"])
def test_single_stream_quantizers_refuse_n_q_above_one(name):
    """VQ, FSQ and the identity have no residual stages: n_q None or 1, anything else raises
    the same InputError (FSQ and the identity used to ignore it and return one stream)."""
    torch.manual_seed(0)
    q = IdentityQuantizer(16) if name == "identity" else QUANTIZERS[name]()
    q.eval()
    x = torch.randn(2, 10, 16)
    want = q(x).ids
    for n_q in (None, 1):
        assert torch.equal(q(x, n_q=n_q).ids, want) and torch.equal(q.encode(x, n_q=n_q), want)
    for n_q in (0, 2, 3):
        for call in (q, q.encode):
            with pytest.raises(InputError, match=rf"n_q: a {type(q).__name__} .*got n_q={n_q}"):
                call(x, n_q=n_q)


def test_learnable_cosine_codebook_stays_a_cosine_lookup():
    """ema=False, cosine=True: the raw learnable codes leave the unit sphere; the lookup and
    the search must still use unit codes, so the ids are the argmax of the cosine similarity
    (whatever the code norms) and quantized == decode_ids(ids)."""
    torch.manual_seed(0)
    q = VectorQuantizer(8, 16, ema=False, cosine=True, init="normal", dead_code_threshold=0.0)
    opt = torch.optim.SGD(q.parameters(), lr=5.0)
    x = torch.randn(4, 64, 8)
    q.train()
    for _ in range(5):
        out = q(x)
        opt.zero_grad()
        (out.loss + out.quantized.square().sum()).backward()
        opt.step()
    # off the sphere as weight decay or large steps leave a learnable codebook
    q.codebook.embed.data.mul_(torch.logspace(-0.7, 0.7, 16)[:, None])
    raw = q.codebook.embed.detach()
    q.eval()
    out = q(x)
    # independent cosine lookup: argmax of cos(x, e) over the codes
    cos = F.normalize(x, dim=-1) @ F.normalize(raw, dim=1).t()  # [B, N, K]
    top2 = cos.topk(2, dim=-1).values
    clear = (top2[..., 0] - top2[..., 1]) > 1e-5  # ignore float ties
    assert torch.equal(out.ids[..., 0][clear], cos.argmax(-1)[clear])
    torch.testing.assert_close(out.quantized.norm(dim=-1), torch.ones(4, 64))
    assert torch.equal(out.quantized, q.decode_ids(out.ids))
    assert torch.equal(q.encode(x), out.ids)
