"""Speed of mmtok.corruption against a straightforward dense implementation, in the same run.

Run: python3 benchmarks/corruption.py   (2 CPU threads; B = 64 x 1024 tokens, K = 2048)

The peer builds the full (B, L, K+1) probability tensor and samples from it (corrupt), or builds
the Qbar_{t-1} rows and Q_t columns per token and multiplies them (q_posterior). Probabilities
are float32 on both sides so the comparison is like for like.
"""

from __future__ import annotations

import time

import torch

from mmtok.corruption import (
    MaskReplaceSchedule,
    corrupt,
    posterior_from_x0_logits,
    q_posterior,
    sample_timesteps,
)

B, L, K = 64, 1024, 2048


def timeit(fn, reps: int) -> float:
    """Best (least disturbed) seconds per call of `reps`, after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def coef(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Schedule values at per-sample t (B,), as float32 per token (B, L)."""
    return values[t].float().view(-1, 1).expand_as(like)


def dense_row(x0, t, a, b, c) -> torch.Tensor:
    """Row x0 of the matrix a I + b on ordinary ids, c to [MASK], dense (B, L, K+1)."""
    row = coef(b, t, x0).unsqueeze(-1).expand(*x0.shape, K + 1).clone()
    row[..., K] = coef(c, t, x0)
    return row.scatter_add_(-1, x0.unsqueeze(-1), coef(a, t, x0).unsqueeze(-1))


def naive_corrupt(x0: torch.Tensor, t: torch.Tensor, s: MaskReplaceSchedule, g) -> torch.Tensor:
    """q(x_t | x0) as a dense (B, L, K+1) tensor, then one multinomial draw per token."""
    probs = dense_row(x0, t, s.alpha_bar, s.beta_bar, s.gamma_bar)
    return torch.multinomial(probs.view(-1, K + 1), 1, generator=g).view_as(x0)


def naive_posterior(xt, x0, t, s: MaskReplaceSchedule) -> torch.Tensor:
    """Qbar_{t-1}[x0, :] * Q_t[:, x_t], normalised, each as a dense (B, L, K+1) tensor."""
    prev = dense_row(x0, t - 1, s.alpha_bar, s.beta_bar, s.gamma_bar)
    to_xt = torch.where(xt < K, coef(s.beta, t, xt), coef(s.gamma, t, xt))
    col = to_xt.unsqueeze(-1).expand(*xt.shape, K + 1).clone()  # Q_t[j, x_t], j ordinary
    col[..., K] = (xt == K).float()
    bump = torch.where(xt < K, coef(s.alpha, t, xt), 0.0).unsqueeze(-1)
    col.scatter_add_(-1, xt.clamp_max(K - 1).unsqueeze(-1), bump)
    post = prev * col
    return post / post.sum(-1, keepdim=True)


def naive_soft(xt, logits, t, s: MaskReplaceSchedule) -> torch.Tensor:
    """sum over x0 of p~(x0) q(x_{t-1} | x_t, x0): K dense posteriors per token."""
    n = xt.numel()
    x0 = torch.arange(K).repeat(n).view(n, K)
    post = naive_posterior(xt.view(n, 1).expand(n, K), x0, t, s)  # (n, K, K+1)
    return torch.einsum("nk,nkj->nj", logits.view(n, K).softmax(-1), post)


def main() -> None:
    torch.set_num_threads(2)
    s = MaskReplaceSchedule(num_classes=K)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, K, (B, L), generator=g)
    t = sample_timesteps(B, s, generator=g)
    xt = corrupt(x0, t, s, generator=g)
    n = B * L
    results = []  # (op, impl, tokens, seconds)
    ours = timeit(lambda: corrupt(x0, t, s, generator=g), reps=20)
    naive = timeit(lambda: naive_corrupt(x0, t, s, g), reps=3)
    results += [("corrupt", "mmtok", n, ours), ("corrupt", "dense probs + multinomial", n, naive)]
    ours = timeit(lambda: q_posterior(xt, x0, t, s, dtype=torch.float32), reps=7)
    naive = timeit(lambda: naive_posterior(xt, x0, t, s), reps=7)
    results += [("q_posterior", "mmtok", n, ours), ("q_posterior", "dense Bayes", n, naive)]
    logits = torch.randn(B, L, K, generator=g)
    ours = timeit(lambda: posterior_from_x0_logits(xt, logits, t, s), reps=3)
    few, t_few = 16, t[:1].expand(16)  # the dense sum over x0 is O(K^2) per token
    small = timeit(lambda: naive_soft(xt[0, :few], logits[0, :few], t_few, s), reps=3)
    results += [("posterior_from_x0_logits", "mmtok", n, ours)]
    results += [("posterior_from_x0_logits", "dense sum over x0", few, small)]
    check(xt, x0, t, logits, s)
    report(results)


def check(xt, x0, t, logits, s: MaskReplaceSchedule) -> None:
    """The peers compute the same thing (on a slice, in float32)."""
    ours = q_posterior(xt[:2], x0[:2], t[:2], s, dtype=torch.float32)
    torch.testing.assert_close(ours, naive_posterior(xt[:2], x0[:2], t[:2], s))
    soft = posterior_from_x0_logits(xt[:1, :4], logits[:1, :4], t[:1], s)[0]
    ref = naive_soft(xt[0, :4], logits[0, :4], t[:1].expand(4), s)
    torch.testing.assert_close(soft, ref, rtol=1e-4, atol=1e-6)


def report(results: list[tuple[str, str, int, float]]) -> None:
    """Markdown table; speed-up = tokens/s of mmtok over tokens/s of the peer below it."""
    print(f"B={B} L={L} K={K} T=100 threads={torch.get_num_threads()} torch {torch.__version__}")
    print("| op | implementation | tokens | ms/call | tokens/s | speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    for i in range(0, len(results), 2):
        (op, ours_name, n_ours, s_ours), (_, peer, n_peer, s_peer) = results[i : i + 2]
        ratio = (n_ours / s_ours) / (n_peer / s_peer)
        for name, n, sec, r in ((ours_name, n_ours, s_ours, ratio), (peer, n_peer, s_peer, 1.0)):
            print(f"| {op} | {name} | {n} | {sec * 1e3:.2f} | {n / sec:.3g} | {r:.1f}x |")


if __name__ == "__main__":
    main()
