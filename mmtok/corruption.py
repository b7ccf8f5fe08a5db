"""VQ-Diffusion mask-and-replace corruption over token ids of any modality.

The forward process of VQ-Diffusion (Gu et al., "Vector Quantized Diffusion Model for
Text-to-Image Synthesis", CVPR 2022, arXiv:2111.14822), its posterior, and the x0-parameterised
reverse step, as pure tensor functions. With K ordinary ids and the [MASK] id K (K + 1 classes)
one step keeps a token with probability alpha_t, masks it with gamma_t and spreads
beta_t = (1 - alpha_t - gamma_t) / K uniformly over all K ordinary ids (the token itself
included); [MASK] is absorbing. Time is 1-based as in the paper: t = 1 .. T, index 0 of every
schedule tensor is the identity (alpha_bar_0 = 1, gamma_bar_0 = 0).

Shapes: `...` any token shape ([B, L] audio, [B, H, W] image, [B, T, H, W] video, Tokens.ids
[B, Q, *grid]); ids are integers in [0, K] (K = [MASK]); probabilities are (..., K + 1); a
per-sample t is (B,) and broadcasts over the leading dim of the ids.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from mmtok.errors import InputError

__all__ = ["MaskReplaceSchedule", "corrupt", "corrupt_step", "posterior_from_x0_logits"]
__all__ += ["q_posterior", "q_probs", "sample_timesteps"]

KINDS = ("mask_and_replace", "absorbing", "uniform")
_TOL = 1e-12  # slack for rounding in schedule checks


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """num / den, 0 where den == 0 (a step after the process has already reached 0 there)."""
    return torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.0)


def _check_range(name: str, values: Tensor, lo: float, hi: float) -> None:
    bad = (values < lo - _TOL) | (values > hi + _TOL) | ~torch.isfinite(values)
    if bad.any():
        t = int(bad.nonzero()[0, 0])
        raise InputError(
            f"{name} must lie in [{lo}, {hi}] for every t; got {float(values[t])!r} at t = {t}"
        )


class MaskReplaceSchedule:
    """Noise schedule of the mask-and-replace process (float64, index = paper t, [0] = identity).

    Args:
        num_classes (int): K, the number of ordinary ids; the [MASK] id is K.
        num_timesteps (int): T >= 2; valid timesteps are 1 .. T.
        att_1, att_T (float): alpha_bar at t = 1 and t = T (linear in t between them).
        ctt_1, ctt_T (float): gamma_bar at t = 1 and t = T (linear in t); used only by
            kind="mask_and_replace".
        kind (str): "mask_and_replace"; "absorbing" (gamma_bar = 1 - alpha_bar, beta = 0) or
            "uniform" (gamma = 0, no [MASK]).

    Attributes alpha, beta, gamma (per step) and alpha_bar, beta_bar, gamma_bar (cumulative) are
    float64 tensors of shape (T + 1,). The defaults are the paper's released setting.
    """

    def __init__(
        self,
        num_classes: int,
        num_timesteps: int = 100,
        att_1: float = 0.99999,
        att_T: float = 0.000009,
        ctt_1: float = 0.000009,
        ctt_T: float = 0.99999,
        kind: str = "mask_and_replace",
    ) -> None:
        if kind not in KINDS:
            raise InputError(f"kind must be one of {KINDS}; got {kind!r}")
        T = _check_int("num_timesteps", num_timesteps, 2)
        ramp = torch.arange(T, dtype=torch.float64) / (T - 1)  # 0 at t = 1, 1 at t = T
        alpha_bar = att_1 + ramp * (att_T - att_1)
        if kind == "mask_and_replace":
            gamma_bar = ctt_1 + ramp * (ctt_T - ctt_1)
        elif kind == "absorbing":
            gamma_bar = 1.0 - alpha_bar
        else:
            gamma_bar = torch.zeros_like(alpha_bar)
        self._build(num_classes, alpha_bar, gamma_bar, kind)

    @classmethod
    def from_cumulative(cls, alpha_bar, gamma_bar, num_classes: int) -> MaskReplaceSchedule:
        """A custom schedule from alpha_bar, gamma_bar of shape (T,) for t = 1 .. T (T >= 2).

        Raises InputError if the values are not probabilities, alpha_bar increases, gamma_bar
        decreases, or a per-step beta_t would be negative. `kind` is "custom".
        """
        sched = cls.__new__(cls)
        alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64).detach().cpu()
        gamma_bar = torch.as_tensor(gamma_bar, dtype=torch.float64).detach().cpu()
        if alpha_bar.ndim != 1 or alpha_bar.shape != gamma_bar.shape:
            raise InputError(
                "alpha_bar and gamma_bar must be 1-D of the same length T (t = 1..T); "
                f"got shapes {tuple(alpha_bar.shape)} and {tuple(gamma_bar.shape)}"
            )
        _check_int("num_timesteps (len(alpha_bar))", alpha_bar.numel(), 2)
        sched._build(num_classes, alpha_bar, gamma_bar, "custom")
        return sched

    def _build(self, num_classes: int, alpha_bar: Tensor, gamma_bar: Tensor, kind: str) -> None:
        K = _check_int("num_classes", num_classes, 1)
        self.num_classes, self.num_timesteps, self.kind = K, alpha_bar.numel(), kind
        self.mask_id, self.vocab_size = K, K + 1
        abar = torch.cat([alpha_bar.new_ones(1), alpha_bar])  # (T+1,), [0] = identity
        gbar = torch.cat([gamma_bar.new_zeros(1), gamma_bar])
        _check_range("alpha_bar", abar, 0.0, 1.0)
        _check_range("gamma_bar", gbar, 0.0, 1.0)
        one, zero = abar.new_ones(1), abar.new_zeros(1)
        alpha = torch.cat([one, _ratio(abar[1:], abar[:-1])])
        gamma = torch.cat([zero, _ratio(gbar[1:] - gbar[:-1], 1.0 - gbar[:-1])])  # 1-(1-g_t)/(..)
        _check_range("alpha_t (alpha_bar must not increase)", alpha, 0.0, 1.0)
        _check_range("gamma_t (gamma_bar must not decrease)", gamma, 0.0, 1.0)
        _check_range("K * beta_bar_t = 1 - alpha_bar_t - gamma_bar_t", 1.0 - abar - gbar, 0.0, 1.0)
        _check_range("K * beta_t = 1 - alpha_t - gamma_t", 1.0 - alpha - gamma, 0.0, 1.0)
        self.alpha, self.gamma = alpha.clamp(0.0, 1.0), gamma.clamp(0.0, 1.0)
        self.alpha_bar, self.gamma_bar = abar.clamp(0.0, 1.0), gbar.clamp(0.0, 1.0)
        self.beta = ((1.0 - self.alpha - self.gamma) / K).clamp_min(0.0)
        self.beta_bar = ((1.0 - self.alpha_bar - self.gamma_bar) / K).clamp_min(0.0)
        if kind == "absorbing":  # exactly no replacement, not 1e-17
            self.beta.zero_()
            self.beta_bar.zero_()

    def _dense(self, t: int, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        t = _check_int("t", t, 0, self.num_timesteps)
        K = self.num_classes
        m = torch.full((K + 1, K + 1), float(b[t]), dtype=torch.float64)
        m[:K, :K] += float(a[t]) * torch.eye(K, dtype=torch.float64)
        m[:K, K] = float(c[t])
        m[K] = 0.0
        m[K, K] = 1.0
        return m

    def Q(self, t: int) -> Tensor:
        """Dense one-step matrix Q_t[x_{t-1}, x_t], (K+1, K+1) float64; 0 <= t <= T (0: I).

        For small K and tests only: the functions below never build it.
        """
        return self._dense(t, self.alpha, self.beta, self.gamma)

    def Qbar(self, t: int) -> Tensor:
        """Dense cumulative matrix Qbar_t[x0, x_t] = (Q_1 ... Q_t), (K+1, K+1); 0 <= t <= T."""
        return self._dense(t, self.alpha_bar, self.beta_bar, self.gamma_bar)

    def __repr__(self) -> str:
        return (
            f"MaskReplaceSchedule(num_classes={self.num_classes}, "
            f"num_timesteps={self.num_timesteps}, kind={self.kind!r})"
        )


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an int; got {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        want = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise InputError(f"{name} must be {want}; got {value}")
    return value


def _unwrap(x, name: str) -> tuple[Tensor, object]:
    """(ids, container): a Tensor, or a dataclass with an `ids` field (e.g. Tokens)."""
    if isinstance(x, Tensor):
        return x, None
    is_instance = dataclasses.is_dataclass(x) and not isinstance(x, type)
    if is_instance and isinstance(getattr(x, "ids", None), Tensor):
        return x.ids, x
    raise InputError(
        f"{name} must be an integer Tensor or a Tokens-like dataclass with `ids`; "
        f"got {type(x).__name__}"
    )


def _ids(x, name: str, sched: MaskReplaceSchedule) -> tuple[Tensor, object]:
    """Validated ids in [0, K] (K = [MASK]) and their container (None for a plain Tensor)."""
    ids, box = _unwrap(x, name)
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise InputError(f"{name} must hold integer ids; got dtype {ids.dtype}")
    if torch.iinfo(ids.dtype).max < sched.mask_id:
        raise InputError(f"{name} dtype {ids.dtype} cannot hold the [MASK] id {sched.mask_id}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) > sched.mask_id):
        raise InputError(
            f"{name} must be ids in [0, {sched.mask_id}] ({sched.mask_id} = "
            f"[MASK]); got min {int(ids.min())}, max {int(ids.max())}"
        )
    return ids, box


def _timesteps(t, ids: Tensor, sched: MaskReplaceSchedule, lo: int = 1) -> Tensor:
    """t as a LongTensor on the ids' device: 0-dim, or (B, 1, ..., 1) broadcasting over ids."""
    T = sched.num_timesteps
    if not isinstance(t, Tensor):
        return torch.tensor(_check_int("t", t, lo, T), device=ids.device)
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise InputError(f"t must be an int or an integer tensor; got dtype {t.dtype}")
    if t.ndim > 1 or (t.ndim == 1 and (ids.ndim == 0 or t.shape[0] != ids.shape[0])):
        raise InputError(
            f"t must be an int or shape (B,) with B = ids.shape[0]; got t shape "
            f"{tuple(t.shape)} for ids shape {tuple(ids.shape)}"
        )
    if t.numel() and (int(t.min()) < lo or int(t.max()) > T):
        raise InputError(
            f"t must lie in [{lo}, {T}] (1-based, as in the paper); got "
            f"min {int(t.min())}, max {int(t.max())}"
        )
    return t.to(ids.device, torch.long).reshape(t.shape + (1,) * (ids.ndim - t.ndim))


def _real(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _at(values: Tensor, t: Tensor) -> Tensor:
    """values[t] on t's device, float64 (float32 on MPS, which has no float64)."""
    return values.to(t.device, _real(t.device))[t]


def _entry(a: Tensor, b: Tensor, c: Tensor, src: Tensor, dst: Tensor, K: int) -> Tensor:
    """M[src, dst] per token for M = a I + b on ordinary ids, c to [MASK], [MASK] row one-hot.

    src = -1 stands for "some ordinary id other than every index in play".
    """
    same = (src == dst).to(a.dtype)
    ordinary = a * same + torch.where(dst < K, b, c)
    return torch.where(src < K, ordinary, same)


def _sample(x: Tensor, keep: Tensor, masked: Tensor, K: int, generator) -> Tensor:
    """Keep x with prob `keep`, [MASK] with prob `masked`, else a uniform id in [0, K)."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=keep.dtype)
    r = torch.randint(0, K, x.shape, generator=generator, device=x.device, dtype=x.dtype)
    out = torch.where(u < keep, x, r)
    return torch.where((u >= 1.0 - masked) | (x == K), K, out)  # [MASK] stays [MASK]


def corrupt(x0, t, sched: MaskReplaceSchedule, generator: torch.Generator | None = None):
    """Sample x_t ~ q(x_t | x0) in one shot, O(1) per token (no probability tensor).

    Args:
        x0: int ids (...) in [0, K] (K = [MASK] stays [MASK]), or a Tokens-like dataclass.
        t: int or LongTensor (B,), 1-based, 1 <= t <= T; (B,) broadcasts over x0's first dim.
        sched: the schedule. generator: optional torch.Generator on x0's device.

    Returns ids of x0's shape, dtype and device (a replaced dataclass for a dataclass input).
    """
    ids, box = _ids(x0, "x0", sched)
    tt = _timesteps(t, ids, sched)
    keep, masked = _at(sched.alpha_bar, tt), _at(sched.gamma_bar, tt)
    out = _sample(ids, keep, masked, sched.mask_id, generator)
    return out if box is None else dataclasses.replace(box, ids=out)


def corrupt_step(x_prev, t, sched: MaskReplaceSchedule, generator: torch.Generator | None = None):
    """Sample x_t ~ q(x_t | x_{t-1}) with the one-step Q_t; same arguments as `corrupt`."""
    ids, box = _ids(x_prev, "x_prev", sched)
    tt = _timesteps(t, ids, sched)
    out = _sample(ids, _at(sched.alpha, tt), _at(sched.gamma, tt), sched.mask_id, generator)
    return out if box is None else dataclasses.replace(box, ids=out)


def _fill(base: Tensor, cols: list[tuple[Tensor, Tensor]], K: int, dtype) -> Tensor:
    """(..., K+1): `base` on every ordinary id, then exact values written at given columns."""
    out = torch.empty(base.shape + (K + 1,), dtype=dtype, device=base.device)
    out[..., :K] = base.unsqueeze(-1)
    for col, val in cols:
        out.scatter_(-1, col.unsqueeze(-1), val.to(dtype).unsqueeze(-1))
    return out


def q_probs(x0, t, sched: MaskReplaceSchedule, *, dtype: torch.dtype | None = None) -> Tensor:
    """q(x_t | x0) = row x0 of Qbar_t, shape (..., K+1) (float64 unless `dtype`).

    t: int or LongTensor (B,), 1-based, 0 <= t <= T (t = 0 gives one-hot x0).
    """
    ids, _ = _ids(x0, "x0", sched)
    tt = _timesteps(t, ids, sched, lo=0)
    s, K = sched, sched.mask_id
    cum = (_at(s.alpha_bar, tt), _at(s.beta_bar, tt), _at(s.gamma_bar, tt))
    base = _entry(*cum, ids, torch.full_like(ids, -1), K)
    cols = [
        (torch.full_like(ids, K), _entry(*cum, ids, torch.full_like(ids, K), K)),
        (ids, _entry(*cum, ids, ids, K)),
    ]
    return _fill(base, cols, K, dtype or base.dtype)


def q_posterior(x_t, x0, t, sched: MaskReplaceSchedule, *, dtype: torch.dtype | None = None):
    """q(x_{t-1} | x_t, x0) = Q_t[x_{t-1}, x_t] Qbar_{t-1}[x0, x_{t-1}] / Qbar_t[x0, x_t].

    Args: x_t, x0 int ids (...) in [0, K] (or Tokens-like); t int or (B,), 1-based, 1..T
    (t = 1 gives one-hot x0). Returns (..., K+1) over x_{t-1}, float64 unless `dtype`.
    Raises InputError where q(x_t | x0) = 0 (x_t cannot come from x0), as Bayes is undefined.
    """
    xt, _ = _ids(x_t, "x_t", sched)
    ids, _ = _ids(x0, "x0", sched)
    if xt.shape != ids.shape:
        raise InputError(
            f"x_t and x0 must have the same shape; got {tuple(xt.shape)} and {tuple(ids.shape)}"
        )
    tt = _timesteps(t, ids, sched)
    s, K = sched, sched.mask_id
    step = (_at(s.alpha, tt), _at(s.beta, tt), _at(s.gamma, tt))
    prev = (_at(s.alpha_bar, tt - 1), _at(s.beta_bar, tt - 1), _at(s.gamma_bar, tt - 1))
    cum = (_at(s.alpha_bar, tt), _at(s.beta_bar, tt), _at(s.gamma_bar, tt))
    den = _entry(*cum, ids, xt, K)  # q(x_t | x0), per token
    if not bool((den > 0).all()):
        raise InputError(
            "q_posterior: some x_t cannot be reached from its x0 at t "
            "(q(x_t | x0) = 0), e.g. an ordinary x_t under an absorbing schedule "
            "that differs from x0, or x0 = [MASK] with x_t != [MASK]"
        )

    def value(j: Tensor) -> Tensor:  # exact posterior mass at x_{t-1} = j, per token
        return _entry(*step, j, xt, K) * _entry(*prev, ids, j, K) / den

    cols = [
        (torch.full_like(ids, K), value(torch.full_like(ids, K))),
        (ids, value(ids)),
        (xt, value(xt)),
    ]
    base = value(torch.full_like(ids, -1))
    return _fill(base, cols, K, dtype or base.dtype)


def _soft_coefs(xt: Tensor, w_xt: Tensor, tt: Tensor, s: MaskReplaceSchedule) -> tuple:
    """Per-token (base, coef, diag, mask, Z) of the closed-form soft posterior (float64).

    For x_{t-1} = j ordinary, j != x_t: base + coef * w_j; at j = x_t (ordinary): diag; at
    [MASK]: mask. Z is the predicted mass on x0 that can produce x_t (the result is / Z).
    """
    a, b, c = _at(s.alpha, tt), _at(s.beta, tt), _at(s.gamma, tt)
    A, Bb, C = _at(s.alpha_bar, tt - 1), _at(s.beta_bar, tt - 1), _at(s.gamma_bar, tt - 1)
    A1, B1, C1 = _at(s.alpha_bar, tt), _at(s.beta_bar, tt), _at(s.gamma_bar, tt)
    one = torch.ones_like(A1)
    inv_m, inv_o, inv_s = _ratio(one, C1), _ratio(one, B1), _ratio(one, A1 + B1)
    is_mask = xt == s.mask_id
    # x_t ordinary: q(x_t | x0) = B1 (x0 != x_t) or A1 + B1 (x0 == x_t); S = sum w(x0) / q
    S = (1.0 - w_xt) * inv_o + w_xt * inv_s
    z_o = (1.0 - w_xt) * (B1 > 0) + w_xt * (A1 + B1 > 0)
    base = torch.where(is_mask, c * Bb * inv_m, b * Bb * S)
    coef = torch.where(is_mask, c * A * inv_m, b * A * inv_o)
    diag = (a + b) * (Bb * S + A * w_xt * inv_s)
    mask = torch.where(is_mask, C * inv_m, 0.0)
    Z = torch.where(is_mask, (C1 > 0).to(A.dtype), z_o)
    return base, coef, diag, mask, Z


def posterior_from_x0_logits(x_t, logits_x0: Tensor, t, sched: MaskReplaceSchedule) -> Tensor:
    """p(x_{t-1} | x_t) = sum_x0 q(x_{t-1} | x_t, x0) p~(x0 | x_t), closed form, O(K)/token.

    Args:
        x_t: int ids (...) in [0, K] (or Tokens-like).
        logits_x0: float (..., K) or (..., K+1) (the [MASK] logit is ignored); p~ = softmax.
        t: int or (B,), 1-based, 1 <= t <= T; at t = 1 the result is p~ itself.
    Returns (..., K+1) over x_{t-1} in logits' dtype (at least float32). x0 with
    q(x_t | x0) = 0 are left out and p~ renormalised over the rest (InputError if none left).
    """
    xt, _ = _ids(x_t, "x_t", sched)
    K = sched.mask_id
    if not (isinstance(logits_x0, Tensor) and logits_x0.is_floating_point()):
        raise InputError("logits_x0 must be a float Tensor")
    if logits_x0.shape[:-1] != xt.shape or logits_x0.shape[-1:] not in ((K,), (K + 1,)):
        raise InputError(
            f"logits_x0 must have shape {tuple(xt.shape)} + ({K},) or "
            f"({K + 1},); got {tuple(logits_x0.shape)}"
        )
    tt = _timesteps(t, xt, sched)
    dtype = torch.promote_types(logits_x0.dtype, torch.float32)
    w = torch.softmax(logits_x0[..., :K].to(dtype), dim=-1)  # p~(x0), (..., K)
    w_xt = w.gather(-1, xt.clamp_max(K - 1).unsqueeze(-1)).squeeze(-1).to(_real(xt.device))
    base, coef, diag, mask, Z = _soft_coefs(xt, torch.where(xt < K, w_xt, 0.0), tt, sched)
    if not bool((Z > 0).all()):
        raise InputError(
            "posterior_from_x0_logits: the predicted x0 puts no mass on any id "
            "that can produce x_t at t"
        )
    out = torch.empty(xt.shape + (K + 1,), dtype=dtype, device=xt.device)
    out[..., K] = 0.0
    scale, shift = ((v / Z).to(dtype).unsqueeze(-1) for v in (coef, base))
    torch.addcmul(shift, w, scale, out=out[..., :K])  # base + coef * w_j, one pass
    at_xt = torch.where(xt < K, diag, mask) / Z  # x_{t-1} = x_t: diag, or [MASK] for x_t = K
    return out.scatter_(-1, xt.unsqueeze(-1), at_xt.to(dtype).unsqueeze(-1))


def sample_timesteps(
    batch_size: int,
    sched: MaskReplaceSchedule,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """LongTensor (batch_size,) uniform over the 1-based timesteps 1 .. T."""
    n = _check_int("batch_size", batch_size, 0)
    return torch.randint(1, sched.num_timesteps + 1, (n,), generator=generator, device=device)
