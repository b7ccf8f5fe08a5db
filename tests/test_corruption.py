"""Tests of mmtok.corruption against closed forms and dense-matrix products built here."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from mmtok.corruption import (
    MaskReplaceSchedule,
    corrupt,
    corrupt_step,
    posterior_from_x0_logits,
    q_posterior,
    q_probs,
    sample_timesteps,
)
from mmtok.errors import InputError

K = 5  # small vocabulary: dense (K+1, K+1) matrices are cheap
DOC = Path(__file__).resolve().parents[1] / "docs" / "corruption.md"
# A custom schedule whose replace branch is large: K * beta_bar_t = 0.10 .. 0.40.
CUSTOM_ABAR = [0.85, 0.70, 0.55, 0.40, 0.25, 0.10]
CUSTOM_GBAR = [0.05, 0.12, 0.20, 0.30, 0.40, 0.50]


def make(kind: str, k: int = K) -> MaskReplaceSchedule:
    if kind == "custom":
        return MaskReplaceSchedule.from_cumulative(CUSTOM_ABAR, CUSTOM_GBAR, k)
    return MaskReplaceSchedule(k, kind=kind)


KINDS = ["mask_and_replace", "custom", "absorbing", "uniform"]
SCHEDS = {kind: make(kind) for kind in KINDS}


def dense(a: float, b: float, c: float, k: int) -> torch.Tensor:
    """The (k+1, k+1) matrix a I + b on ordinary ids, c to [MASK], [MASK] absorbing."""
    m = torch.zeros(k + 1, k + 1, dtype=torch.float64)
    m[:k, :k] = b + a * torch.eye(k, dtype=torch.float64)
    m[:k, k] = c
    m[k, k] = 1.0
    return m


def bayes(s: MaskReplaceSchedule, t: int, x0: int, xt: int) -> torch.Tensor:
    """q(x_{t-1} | x_t, x0) from dense products of one-step matrices (independent of Qbar)."""
    prev = torch.eye(s.vocab_size, dtype=torch.float64)
    for i in range(1, t):
        prev = prev @ s.Q(i)
    cum = prev @ s.Q(t)
    return s.Q(t)[:, xt] * prev[x0] / cum[x0, xt]


def times(s: MaskReplaceSchedule) -> list[int]:
    T = s.num_timesteps
    return sorted({1, 2, 3, T // 2, T - 1, T})


def assert_freq(samples: torch.Tensor, probs: torch.Tensor) -> None:
    """Empirical class frequencies within 5 sigma of probs (K+1,)."""
    n = samples.numel()
    freq = torch.bincount(samples.flatten(), minlength=probs.numel()).double() / n
    # the normal approximation fails where n p << 1: floor the variance at one expected count
    sigma = (probs.clamp_min(1 / n) * (1 - probs) / n).clamp_min(0).sqrt()
    assert freq.shape == probs.shape
    assert ((freq - probs).abs() <= 5 * sigma + 1e-12).all(), (freq, probs)


# --- 1. schedule -----------------------------------------------------------------------------


def test_default_schedule_is_the_papers():
    s, T = SCHEDS["mask_and_replace"], 100
    att = [1.0] + [0.99999 + i / (T - 1) * (0.000009 - 0.99999) for i in range(T)]
    ctt = [0.0] + [0.000009 + i / (T - 1) * (0.99999 - 0.000009) for i in range(T)]
    at = [1.0] + [att[i] / att[i - 1] for i in range(1, T + 1)]
    ct = [0.0] + [1 - (1 - ctt[i]) / (1 - ctt[i - 1]) for i in range(1, T + 1)]
    expect = {
        "alpha_bar": att,
        "gamma_bar": ctt,
        "alpha": at,
        "gamma": ct,
        "beta": [(1 - a - c) / K for a, c in zip(at, ct, strict=True)],
        "beta_bar": [(1 - a - c) / K for a, c in zip(att, ctt, strict=True)],
    }
    for name, values in expect.items():
        got = getattr(s, name)
        assert got.dtype == torch.float64 and got.shape == (T + 1,)
        torch.testing.assert_close(
            got, torch.tensor(values, dtype=torch.float64), rtol=0, atol=1e-12
        )
    assert s.mask_id == K and s.vocab_size == K + 1 and s.num_timesteps == T


@pytest.mark.parametrize("kind", KINDS)
def test_schedule_rows_are_distributions(kind):
    s = SCHEDS[kind]
    assert (s.gamma_bar.diff() >= 0).all()
    torch.testing.assert_close(
        s.alpha + K * s.beta + s.gamma, torch.ones_like(s.alpha), rtol=0, atol=1e-12
    )
    for t in range(s.num_timesteps + 1):
        for m, (a, b, c) in (
            (s.Q(t), (s.alpha[t], s.beta[t], s.gamma[t])),
            (s.Qbar(t), (s.alpha_bar[t], s.beta_bar[t], s.gamma_bar[t])),
        ):
            assert m.shape == (K + 1, K + 1) and (m >= 0).all()
            torch.testing.assert_close(
                m.sum(1), torch.ones(K + 1, dtype=torch.float64), rtol=0, atol=1e-12
            )
            torch.testing.assert_close(
                m[K], torch.eye(K + 1, dtype=torch.float64)[K], rtol=0, atol=0
            )
            torch.testing.assert_close(
                m, dense(float(a), float(b), float(c), K), rtol=0, atol=1e-15
            )


@pytest.mark.parametrize("kind", KINDS)
def test_qbar_is_product_of_steps_and_q_probs_its_rows(kind):
    s = SCHEDS[kind]
    x0 = torch.arange(K + 1)
    prod = torch.eye(K + 1, dtype=torch.float64)
    torch.testing.assert_close(s.Qbar(0), prod, rtol=0, atol=0)
    torch.testing.assert_close(q_probs(x0, 0, s), prod, rtol=0, atol=0)
    for t in range(1, s.num_timesteps + 1):
        prod = prod @ s.Q(t)
        torch.testing.assert_close(s.Qbar(t), prod, rtol=0, atol=1e-12)
        torch.testing.assert_close(q_probs(x0, t, s), prod, rtol=0, atol=1e-12)
    last = q_probs(x0[:K], s.num_timesteps, s)
    assert s.alpha_bar[-1] + K * s.beta_bar[-1] > 0 and (last[:, :K].sum(-1) > 0).all()


def test_q_probs_float32_and_any_shape():
    s = SCHEDS["custom"]
    x0 = torch.randint(0, K + 1, (2, 3, 4, 5), generator=torch.Generator().manual_seed(0))
    p64, p32 = q_probs(x0, 4, s), q_probs(x0, 4, s, dtype=torch.float32)
    assert p64.shape == (2, 3, 4, 5, K + 1) and p32.dtype == torch.float32
    torch.testing.assert_close(p32.double(), p64, rtol=0, atol=1e-5)
    torch.testing.assert_close(p64, s.Qbar(4)[x0], rtol=0, atol=1e-12)


# --- 3-4, 7. sampling ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,t",
    [("mask_and_replace", t) for t in (1, 30, 70, 100)] + [("custom", t) for t in range(1, 7)],
)
def test_corrupt_matches_q_within_5_sigma(kind, t):
    s, n = SCHEDS[kind], 100_000
    x0 = torch.arange(K + 1).repeat_interleave(n).view(K + 1, n)  # every x0, [MASK] included
    xt = corrupt(x0, t, s, generator=torch.Generator().manual_seed(t))
    probs = q_probs(torch.arange(K + 1), t, s)
    for v in range(K + 1):
        assert_freq(xt[v], probs[v])
    assert (xt[K] == K).all() and ((xt >= 0) & (xt <= K)).all()


@pytest.mark.parametrize("kind,t", [("custom", 3), ("custom", 6), ("mask_and_replace", 100)])
def test_t_single_steps_give_the_cumulative_marginal(kind, t):
    s, n = SCHEDS[kind], 200_000
    g = torch.Generator().manual_seed(10 + t)
    x = torch.full((n,), 2)
    for i in range(1, t + 1):
        x = corrupt_step(x, i, s, generator=g)
    assert_freq(x, q_probs(torch.tensor(2), t, s))


def test_replacement_stays_in_ordinary_ids_and_masks_are_absorbing():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, K, (200_000,), generator=g)
    out = corrupt(x0, 6, make("uniform"), generator=g)  # gamma = 0: every change is a replace
    assert (out < K).all() and (out >= 0).all() and (out != x0).any()
    s = SCHEDS["custom"]
    masked = torch.full((1000,), K)
    assert (corrupt(masked, 6, s, generator=g) == K).all()
    assert (corrupt_step(masked, 1, s, generator=g) == K).all()


def test_absorbing_and_uniform_kinds():
    g = torch.Generator().manual_seed(2)
    x0 = torch.randint(0, K, (50_000,), generator=g)
    for t in (1, 50, 100):
        out = corrupt(x0, t, SCHEDS["absorbing"], generator=g)
        assert ((out == x0) | (out == K)).all()
        assert (corrupt(x0, t, SCHEDS["uniform"], generator=g) != K).all()
    assert (SCHEDS["absorbing"].beta == 0).all() and (SCHEDS["uniform"].gamma_bar == 0).all()


def test_generator_is_deterministic_and_global_rng_untouched():
    s = SCHEDS["custom"]
    x0 = torch.randint(0, K, (4, 64), generator=torch.Generator().manual_seed(3))
    state = torch.get_rng_state()
    a = corrupt(x0, 3, s, generator=torch.Generator().manual_seed(7))
    b = corrupt(x0, 3, s, generator=torch.Generator().manual_seed(7))
    ts = sample_timesteps(8, s, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert torch.equal(ts, sample_timesteps(8, s, generator=torch.Generator().manual_seed(7)))


# --- 6. batching, shapes, dtypes -------------------------------------------------------------


def test_per_sample_t_equals_separate_calls():
    s, g = SCHEDS["mask_and_replace"], torch.Generator().manual_seed(4)
    x0 = torch.randint(0, K, (4, 7), generator=g)
    xt = torch.randint(0, K + 1, (4, 7), generator=g)
    logits = torch.randn(4, 7, K, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 5, 50, 100])
    calls = {
        "q_probs": lambda tt, i: q_probs(x0[i], tt, s),
        "q_posterior": lambda tt, i: q_posterior(xt[i], x0[i], tt, s),
        "soft": lambda tt, i: posterior_from_x0_logits(xt[i], logits[i], tt, s),
    }
    for fn in calls.values():
        batched = fn(t, slice(None))
        assert torch.equal(batched, torch.stack([fn(int(t[b]), b) for b in range(4)]))
    same = corrupt(x0, torch.full((4,), 9), s, generator=torch.Generator().manual_seed(5))
    assert torch.equal(same, corrupt(x0, 9, s, generator=torch.Generator().manual_seed(5)))


def test_per_sample_t_statistics():
    s, n = SCHEDS["custom"], 100_000
    t = torch.tensor([1, 3, 6])
    xt = corrupt(torch.full((3, n), 1), t, s, generator=torch.Generator().manual_seed(6))
    for b in range(3):
        assert_freq(xt[b], q_probs(torch.tensor(1), int(t[b]), s))


@pytest.mark.parametrize(
    "shape", [(2, 240), (2, 12, 20), (2, 4, 6, 10)], ids=["audio", "image", "video"]
)
def test_all_token_shapes_behave_identically(shape):
    s = SCHEDS["custom"]
    flat = torch.randint(0, K + 1, (2, 240), generator=torch.Generator().manual_seed(8))
    t = torch.tensor([2, 5])
    ref = corrupt(flat, t, s, generator=torch.Generator().manual_seed(9))
    out = corrupt(flat.view(shape), t, s, generator=torch.Generator().manual_seed(9))
    assert out.shape == shape and out.dtype == torch.int64
    assert torch.equal(out.reshape(2, 240), ref)
    assert torch.equal(q_probs(flat.view(shape), t, s).reshape(2, 240, K + 1), q_probs(flat, t, s))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.uint8])
def test_output_keeps_integer_dtype(dtype):
    x0 = torch.randint(0, K + 1, (3, 4)).to(dtype)
    out = corrupt(x0, 3, SCHEDS["custom"])
    assert out.dtype == dtype and out.shape == (3, 4)


# --- 5. posteriors ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_posterior_is_bayes_on_dense_matrices(kind):
    s = SCHEDS[kind]
    for t in times(s):
        cum = s.Qbar(t)
        pairs = [(a, b) for a in range(K + 1) for b in range(K + 1) if cum[a, b] > 0]
        x0, xt = (torch.tensor(v) for v in zip(*pairs, strict=True))
        post = q_posterior(xt, x0, t, s)
        ref = torch.stack([bayes(s, t, a, b) for a, b in pairs])
        torch.testing.assert_close(post, ref, rtol=0, atol=1e-9)
        torch.testing.assert_close(
            post.sum(-1), torch.ones(len(pairs), dtype=torch.float64), rtol=0, atol=1e-9
        )
        assert (post[xt < K, K] == 0).all()
        if t == 1:
            torch.testing.assert_close(
                post, torch.eye(K + 1, dtype=torch.float64)[x0], rtol=0, atol=1e-12
            )


@pytest.mark.parametrize("kind", KINDS)
def test_posterior_marginalises_to_q_of_t_minus_1(kind):
    s = SCHEDS[kind]
    for t in times(s):
        for v in range(K + 1):
            q_t = q_probs(torch.tensor(v), t, s)
            xt = (q_t > 0).nonzero().flatten()
            post = q_posterior(xt, torch.full_like(xt, v), t, s)
            torch.testing.assert_close(
                (post * q_t[xt, None]).sum(0), q_probs(torch.tensor(v), t - 1, s), rtol=0, atol=1e-9
            )


def soft_reference(s: MaskReplaceSchedule, t: int, xt: int, w: torch.Tensor) -> torch.Tensor:
    """sum over x0 that can produce x_t of w(x0) q(x_{t-1} | x_t, x0), renormalised."""
    ok = [x0 for x0 in range(K) if s.Qbar(t)[x0, xt] > 0]
    mix = sum(w[x0] * bayes(s, t, x0, xt) for x0 in ok)
    return mix / sum(w[x0] for x0 in ok)


@pytest.mark.parametrize("kind", KINDS)
def test_soft_posterior_closed_form_matches_dense_sum(kind):
    s, g = SCHEDS[kind], torch.Generator().manual_seed(11)
    for t in times(s):
        xt = torch.arange(K + 1) if kind != "uniform" else torch.arange(K)
        logits = 2 * torch.randn(xt.numel(), K, generator=g, dtype=torch.float64)
        post = posterior_from_x0_logits(xt, logits, t, s)
        w = logits.softmax(-1)
        ref = torch.stack([soft_reference(s, t, int(v), w[i]) for i, v in enumerate(xt)])
        torch.testing.assert_close(post, ref, rtol=0, atol=1e-9)
        with_mask = torch.cat(
            [logits, torch.randn(xt.numel(), 1, generator=g, dtype=torch.float64)], -1
        )
        assert torch.equal(posterior_from_x0_logits(xt, with_mask, t, s), post)
        p32 = posterior_from_x0_logits(xt, logits.float(), t, s)
        assert p32.dtype == torch.float32
        torch.testing.assert_close(p32.double(), ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(
            post.sum(-1), torch.ones(xt.numel(), dtype=torch.float64), rtol=0, atol=1e-9
        )


@pytest.mark.parametrize("kind", ["mask_and_replace", "custom"])
def test_soft_posterior_at_t1_is_the_prediction_and_one_hot_gives_hard(kind):
    s, g = SCHEDS[kind], torch.Generator().manual_seed(12)
    xt = torch.randint(0, K + 1, (3, 8), generator=g)
    logits = torch.randn(3, 8, K, generator=g, dtype=torch.float64)
    post = posterior_from_x0_logits(xt, logits, 1, s)
    torch.testing.assert_close(post[..., :K], logits.softmax(-1), rtol=0, atol=1e-12)
    assert (post[..., K] == 0).all()
    x0 = torch.randint(0, K, (3, 8), generator=g)
    one_hot = torch.full((3, 8, K), -math.inf, dtype=torch.float64).scatter(-1, x0[..., None], 0.0)
    for t in times(s):
        hard = q_posterior(xt, x0, t, s)
        torch.testing.assert_close(
            posterior_from_x0_logits(xt, one_hot, t, s), hard, rtol=0, atol=1e-9
        )


def test_absorbing_soft_posterior_keeps_unmasked_tokens():
    s = SCHEDS["absorbing"]
    xt = torch.tensor([0, 3, K])
    post = posterior_from_x0_logits(xt, torch.randn(3, K, dtype=torch.float64), 40, s)
    torch.testing.assert_close(
        post[:2], torch.eye(K + 1, dtype=torch.float64)[xt[:2]], rtol=0, atol=1e-12
    )


# --- Tokens-like input -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FakeTokens:
    ids: torch.Tensor  # int64 [B, Q, *grid]
    grid: tuple[int, ...]


def test_tokens_like_dataclass_is_accepted():
    s, g = SCHEDS["custom"], torch.Generator().manual_seed(13)
    tok = FakeTokens(torch.randint(0, K, (2, 1, 3, 4), generator=g), (3, 4))
    out = corrupt(tok, 4, s, generator=torch.Generator().manual_seed(1))
    assert isinstance(out, FakeTokens) and out.grid == (3, 4)
    assert torch.equal(out.ids, corrupt(tok.ids, 4, s, generator=torch.Generator().manual_seed(1)))
    step = corrupt_step(tok, 2, s, generator=g)
    assert isinstance(step, FakeTokens) and step.ids.shape == tok.ids.shape
    assert torch.equal(q_probs(tok, 4, s), q_probs(tok.ids, 4, s))
    assert torch.equal(q_posterior(out, tok, 4, s), q_posterior(out.ids, tok.ids, 4, s))
    logits = torch.randn(2, 1, 3, 4, K, generator=g)
    assert torch.equal(
        posterior_from_x0_logits(out, logits, 4, s), posterior_from_x0_logits(out.ids, logits, 4, s)
    )


class NotADataclass:
    ids = torch.zeros(2, 3, dtype=torch.long)


# --- 8. validation ---------------------------------------------------------------------------

S = SCHEDS["mask_and_replace"]
X = torch.zeros(2, 3, dtype=torch.long)
BAD = {
    "T<2": (lambda: MaskReplaceSchedule(K, num_timesteps=1), "num_timesteps"),
    "kind": (lambda: MaskReplaceSchedule(K, kind="masked"), "kind"),
    "K=0": (lambda: MaskReplaceSchedule(0), "num_classes"),
    "t=0": (lambda: corrupt(X, 0, S), r"t must be in \[1, 100\]"),
    "t>T": (lambda: corrupt(X, 101, S), r"t must be in \[1, 100\]"),
    "t tensor range": (lambda: corrupt(X, torch.tensor([1, 101]), S), r"t must lie in \[1, 100\]"),
    "t float": (lambda: corrupt(X, 2.0, S), "t must be an int"),
    "t shape": (lambda: corrupt(X, torch.tensor([1, 2, 3]), S), r"shape \(B,\)"),
    "posterior t=0": (lambda: q_posterior(X, X, 0, S), r"t must be in \[1, 100\]"),
    "ids<0": (lambda: corrupt(X - 1, 3, S), r"ids in \[0, 5\]"),
    "ids>K": (lambda: corrupt(X + K + 1, 3, S), r"ids in \[0, 5\]"),
    "float ids": (lambda: corrupt(X.float(), 3, S), "integer ids"),
    "bool ids": (lambda: corrupt(X.bool(), 3, S), "integer ids"),
    "small dtype": (lambda: corrupt(X.to(torch.int8), 3, MaskReplaceSchedule(200)), "cannot hold"),
    "negative beta": (
        lambda: MaskReplaceSchedule.from_cumulative([0.5, 0.5], [0.1, 0.3], K),
        "beta_t",
    ),
    "alpha_bar up": (
        lambda: MaskReplaceSchedule.from_cumulative([0.3, 0.5], [0.1, 0.2], K),
        "alpha_bar",
    ),
    "sum > 1": (lambda: MaskReplaceSchedule.from_cumulative([0.9, 0.5], [0.2, 0.5], K), "beta_bar"),
    "custom T<2": (lambda: MaskReplaceSchedule.from_cumulative([0.5], [0.5], K), "num_timesteps"),
    "custom shapes": (
        lambda: MaskReplaceSchedule.from_cumulative([0.5, 0.4], [0.1], K),
        "same length",
    ),
    "impossible pair": (lambda: q_posterior(X + 1, X, 5, SCHEDS["absorbing"]), "cannot be reached"),
    "mask x0": (lambda: q_posterior(X, X + K, 5, S), "cannot be reached"),
    "shape mismatch": (lambda: q_posterior(X, X[:1], 5, S), "same shape"),
    "logits shape": (
        lambda: posterior_from_x0_logits(X, torch.zeros(2, 3, K + 2), 5, S),
        "logits_x0",
    ),
    "int logits": (
        lambda: posterior_from_x0_logits(X, torch.zeros(2, 3, K, dtype=torch.long), 5, S),
        "float",
    ),
    "not a dataclass": (lambda: corrupt(NotADataclass(), 3, S), "Tokens-like"),
    "batch size": (lambda: sample_timesteps(-1, S), "batch_size"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_validation_errors(case):
    fn, match = BAD[case]
    with pytest.raises(InputError, match=match):
        fn()


# --- misc ------------------------------------------------------------------------------------


def test_sample_timesteps_uniform_over_1_to_T():
    s = SCHEDS["custom"]
    ts = sample_timesteps(120_000, s, generator=torch.Generator().manual_seed(14))
    assert ts.dtype == torch.int64 and ts.shape == (120_000,)
    probs = torch.tensor([0.0] + [1 / 6] * 6, dtype=torch.float64)
    assert_freq(ts, probs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_the_ids_device():
    s, dev = SCHEDS["custom"], torch.device("cuda")
    x0 = torch.randint(0, K, (4, 64), device=dev)
    t = sample_timesteps(4, s, generator=torch.Generator(dev).manual_seed(0), device=dev)
    xt = corrupt(x0, t, s, generator=torch.Generator(dev).manual_seed(0))
    assert xt.device.type == "cuda" and xt.dtype == torch.int64
    post = q_posterior(xt, x0, t, s)
    torch.testing.assert_close(
        post.cpu(), q_posterior(xt.cpu(), x0.cpu(), t.cpu(), s), rtol=0, atol=1e-12
    )
    logits = torch.randn(4, 64, K, device=dev)
    soft = posterior_from_x0_logits(xt, logits, t, s)
    torch.testing.assert_close(
        soft.cpu(), posterior_from_x0_logits(xt.cpu(), logits.cpu(), t.cpu(), s)
    )
