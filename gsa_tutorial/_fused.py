"""The fused pieces of the fast group layer (chapter 9), with hand-written backwards.

* :func:`softmax_lse`: softmax and log-sum-exp over one axis in one pass (the factorised
  ``"relative"`` path).
* :func:`window_attention`: ``query="own"``, a joint softmax over the window's keys and their
  group elements for each query.
* :func:`group_window_attention`: the tables that depend on the output element ``h``
  (``"gevit"``, ``"pair"``, ``"official"``), one joint softmax per ``(h, h̃)`` summed over ``h̃``.

The last two work as flash attention does: the scores are computed one block of pixels at a
time, forward keeps only the log-sum-exp of each softmax, and backward recomputes the block's
scores from it. No score tensor for the whole map exists in either pass, and the softmax is
shifted by its own maximum (exact in every case, nothing to fall back to).

All are checked against autograd with ``torch.autograd.gradcheck`` (tests/test_attention.py).
"""

from __future__ import annotations

import contextlib
import math

import torch

__all__ = ["softmax_lse", "window_attention", "group_window_attention"]


class _SoftmaxLSE(torch.autograd.Function):
    """``softmax(x, dim)`` and ``logsumexp(x, dim)`` in one pass, with a hand-written backward.

    Same numbers as ``torch.softmax``/``torch.logsumexp`` (max-subtracted), but several times
    faster on CPU for the short last axes of the group layer (|H| or k*k entries): PyTorch's
    softmax kernel is slow when the reduced axis is short, and we need both results anyway.
    Backward: ``∂L/∂x = p ⊙ (g_p − Σ(g_p ⊙ p) + g_lse)``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        ctx.dim = dim
        m = x.amax(dim=dim, keepdim=True)  # (..., 1, ...); finite: every row has an unmasked entry
        p = (x - m).exp_()  # like x
        total = p.sum(dim=dim, keepdim=True)  # (..., 1, ...)
        p.div_(total)
        lse = (total.log_() + m).squeeze(dim)  # x without the axis dim
        ctx.save_for_backward(p)
        return p, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_p: torch.Tensor | None, grad_lse: torch.Tensor | None) -> tuple[torch.Tensor | None, None]:
        (p,) = ctx.saved_tensors
        if grad_p is None:
            return (None if grad_lse is None else p * grad_lse.unsqueeze(ctx.dim)), None
        grad = p * grad_p  # the only new tensor of the size of x
        dot = grad.sum(dim=ctx.dim, keepdim=True)  # Σ g_p ⊙ p
        if grad_lse is not None:
            dot = dot - grad_lse.unsqueeze(ctx.dim)
        return grad.addcmul_(p, dot, value=-1.0), None  # p ⊙ (g_p − Σ g_p ⊙ p + g_lse)


def softmax_lse(x: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax and log-sum-exp over the axis ``dim``: ``x -> (like x, x without that axis)``.

    Half-precision inputs (under mixed precision) are computed in float32 and cast back, as
    autocast does for ``torch.softmax``: exponentials and sums of 16-bit numbers lose too much.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        p, lse = _SoftmaxLSE.apply(x.float(), dim)
        return p.to(x.dtype), lse.to(x.dtype)
    return _SoftmaxLSE.apply(x, dim)


def _exp_shifted(logits: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``exp(logits - shift)`` in place, with the exponent clamped from below at ``4·log(eps)``.

    The exponential of a number far below zero (a masked key, a very unlikely one) underflows, and
    the CPU's vectorised ``exp`` takes a slow path for it: with a few percent of such entries it is
    2-6 times slower; and subnormal weights make the matmuls of the backward pass several times
    slower again. Clamped, those entries get the weight ``eps⁴`` (about 2e-28 in float32, 2e-63 in
    float64) instead of a subnormal number or zero: far below the last bit of every softmax sum,
    which is at least 1 (the maximum contributes ``exp(0)``), so the sums, the weights of all other
    keys and the outputs are unchanged to round-off, and a key outside the image still adds nothing
    to the output (its value is the zero padding).
    """
    floor = 4.0 * math.log(torch.finfo(logits.dtype).eps)
    return logits.sub_(shift).clamp_(min=floor).exp_()


#: Score numbers per pixel block on a GPU (128 MiB of float32 per score tensor): few blocks, so few
#: kernel launches, and still no score tensor of a large map at once.
GPU_BLOCK_NUMBERS = 2**25


def _pixel_blocks(pixels: int, per_pixel: int, cpu_budget: int, device: torch.device) -> list[slice]:
    """Slices of the pixel axis holding at most ``cpu_budget`` score numbers each on a CPU
    (:data:`GPU_BLOCK_NUMBERS` elsewhere), at least one pixel per block."""
    budget = cpu_budget if device.type == "cpu" else GPU_BLOCK_NUMBERS
    step = max(1, budget // max(per_pixel, 1))
    return [slice(i, min(i + step, pixels)) for i in range(0, pixels, step)]


class _WindowAttention(torch.autograd.Function):
    """Softmax attention of every query over its window of keys and their group elements, in pixel
    blocks, keeping only the log-sum-exp for the backward pass (which recomputes the scores).

    ``out[r, n, h] = Σ_{(k,s)} softmax_{(k,s)}(q[r,n,h]·k[r, idx[n,k], s] + b[r,n,h,k] + c[r,n,h,s]) v[r, idx[n,k], s]``

    Shapes: ``q (R, N, h, d)`` (rows ``R`` = batch × heads), padded keys and values ``(R, P, s, d)``,
    ``idx (N, K)`` into ``P`` (:func:`gsa_tutorial.windows.neighbour_index`), ``b (R, N, h, K)``
    (``-inf`` where the key lies outside the image), ``c (R, N, h, s)`` -> ``(R, N, h, d)``.
    No ``(R, N, h, K, s)`` tensor exists for the whole map, in either pass.
    """

    #: Score numbers per block (``R·n·h·K·s``) on a CPU: large enough for efficient matmuls, small
    #: enough for the cache. On a GPU, where launches cost more than memory traffic: :data:`GPU_BLOCK_NUMBERS`.
    block_numbers = 2**19

    @staticmethod
    def _blocks(q: torch.Tensor, idx: torch.Tensor, s: int) -> list[slice]:
        R, N, h, _ = q.shape
        return _pixel_blocks(N, R * h * idx.shape[1] * s, _WindowAttention.block_numbers, q.device)

    @staticmethod
    def _scores(q: torch.Tensor, k_pad: torch.Tensor, b: torch.Tensor, c: torch.Tensor, idx: torch.Tensor, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        R, _, h, d = q.shape
        n, K, s = rows.stop - rows.start, idx.shape[1], k_pad.shape[2]
        keys = k_pad.index_select(1, idx[rows].reshape(-1)).view(R, n, K * s, d)  # (R, n, K·s, d)
        logits = (q[:, rows] @ keys.transpose(-1, -2)).view(R, n, h, K, s)  # q·k: (R, n, h, K, s)
        logits += b[:, rows].unsqueeze(-1)
        logits += c[:, rows].unsqueeze(-2)
        return logits.view(R, n, h, K * s), keys

    @staticmethod
    def forward(ctx, q: torch.Tensor, k_pad: torch.Tensor, v_pad: torch.Tensor, b: torch.Tensor, c: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        R, N, h, d = q.shape
        K, s = idx.shape[1], k_pad.shape[2]
        out = q.new_empty(R, N, h, v_pad.shape[-1])
        lse = q.new_empty(R, N, h)
        for rows in _WindowAttention._blocks(q, idx, s):
            logits, _ = _WindowAttention._scores(q, k_pad, b, c, idx, rows)  # (R, n, h, K·s)
            top = logits.amax(dim=-1, keepdim=True)  # finite: the query's own pixel is inside
            probs = _exp_shifted(logits, top)
            total = probs.sum(dim=-1, keepdim=True)
            values = v_pad.index_select(1, idx[rows].reshape(-1)).view(R, -1, K * s, v_pad.shape[-1])  # (R, n, K·s, d)
            out[:, rows] = (probs @ values).div_(total)  # (R, n, h, d)
            lse[:, rows] = (total.log_() + top).squeeze(-1)
        ctx.save_for_backward(q, k_pad, v_pad, b, c, idx, out, lse)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k_pad, v_pad, b, c, idx, out, lse = ctx.saved_tensors
        R, N, h, d = q.shape
        K, s = idx.shape[1], k_pad.shape[2]
        grad = grad.contiguous()
        delta = (grad * out).sum(dim=-1, keepdim=True)  # Σ_(k,s) p·(g·v) = g·out: (R, N, h, 1)
        grad_q, grad_b, grad_c = torch.empty_like(q), torch.empty_like(b), torch.empty_like(c)
        grad_k, grad_v = torch.zeros_like(k_pad), torch.zeros_like(v_pad)
        for rows in _WindowAttention._blocks(q, idx, s):
            flat = idx[rows].reshape(-1)
            logits, keys = _WindowAttention._scores(q, k_pad, b, c, idx, rows)
            probs = _exp_shifted(logits, lse[:, rows].unsqueeze(-1))  # (R, n, h, K·s)
            values = v_pad.index_select(1, flat).view(R, -1, K * s, v_pad.shape[-1])  # (R, n, K·s, d)
            g = grad[:, rows]  # (R, n, h, d)
            grad_v.index_add_(1, flat, (probs.transpose(-1, -2) @ g).view(R, -1, s, v_pad.shape[-1]))
            dlogits = (g @ values.transpose(-1, -2)).sub_(delta[:, rows]).mul_(probs)  # p ⊙ (g·v − Δ)
            grad_q[:, rows] = dlogits @ keys  # (R, n, h, d)
            grad_k.index_add_(1, flat, (dlogits.transpose(-1, -2) @ q[:, rows]).view(R, -1, s, d))
            scores = dlogits.view(R, -1, h, K, s)
            grad_b[:, rows] = scores.sum(dim=-1)
            grad_c[:, rows] = scores.sum(dim=-2)
        return grad_q, grad_k, grad_v, grad_b, grad_c, None


def _without_autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """Autocast off on ``device``: the fused attentions compute in float32 even inside ``torch.autocast``
    (as autocast itself does for softmax), not in a 16-bit dtype the matmuls inside would be cast to."""
    try:
        return torch.autocast(device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know: nothing to turn off
        return contextlib.nullcontext()


def _in_float32(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors]


def window_attention(
    q: torch.Tensor, k_pad: torch.Tensor, v_pad: torch.Tensor, b: torch.Tensor, c: torch.Tensor, idx: torch.Tensor
) -> torch.Tensor:
    """Joint softmax attention over ``(k, s)`` with additive biases (see :class:`_WindowAttention`).

    16-bit inputs, and every input inside ``torch.autocast``, are computed in float32; the result has ``q``'s dtype.
    """
    with _without_autocast(q.device):
        out = _WindowAttention.apply(*_in_float32(q, k_pad, v_pad, b, c), idx)
    return out.to(q.dtype)


class _GroupWindowAttention(torch.autograd.Function):
    """The group layer with a group term that depends on the output element ``h`` (``"gevit"``,
    ``"pair"``, ``"official"``), in pixel blocks, keeping only the log-sum-exps for the backward
    pass (which recomputes the scores block by block).

    For every pixel, output element ``h`` and query element ``t`` a joint softmax over ``(k, s)``::

        L[h,t,k,s] = q[t]·k[idx[n,k], s] + q[t]·ρ[h,k] + c[h,t,s]      (−inf where the key is outside)
        out[h]     = Σ_t Σ_{(k,s)} softmax_{(k,s)}(L[h,t]) v[idx[n,k], s]

    Shapes: ``q (R, N, t, d)`` (rows ``R`` = batch × heads), padded keys and values ``(R, P, s, d)``,
    ``rho (R, h·K, d)`` (the positional vectors ``ρ(h⁻¹ d_k)`` of each row's head), ``c (R, N, h, t, s)``,
    ``idx (N, K)`` into ``P``, ``outside (N, K)`` bool -> ``(R, N, h, d)``.

    The ``|H|³·k²`` scores exist for one block of pixels at a time (:attr:`block_numbers`), in
    both passes; nothing of that size is stored. The spatial term is computed inside the block
    from ``q`` and ``rho`` (no ``|H|²·k²`` tensor for the whole map either).
    """

    #: Score numbers per block (``R·n·|H|³·K``) on a CPU: large enough for efficient matmuls, small
    #: enough for the cache. On a GPU: :data:`GPU_BLOCK_NUMBERS`.
    block_numbers = 2**20

    @staticmethod
    def _blocks(q: torch.Tensor, c: torch.Tensor, K: int) -> list[slice]:
        R, N, h, t, s = c.shape
        return _pixel_blocks(N, R * h * t * K * s, _GroupWindowAttention.block_numbers, q.device)

    @staticmethod
    def _spread(s: int, K: int, like: torch.Tensor) -> torch.Tensor:
        """The 0/1 matrix ``(s + K, K·s)`` that spreads ``[c[s'], b[k']]`` over the keys ``(k, s)``:
        ``[c, b] @ spread = c[s] + b[k]``, one matmul instead of two broadcast additions (exact: every
        column adds one entry of ``c`` and one of ``b`` to zeros)."""
        column = torch.arange(K * s, device=like.device)
        rows = torch.arange(s + K, device=like.device)[:, None]
        return ((rows == column % s) | (rows == s + column // s)).to(like.dtype)

    @staticmethod
    def _scores(
        q: torch.Tensor, k_pad: torch.Tensor, rho: torch.Tensor, c: torch.Tensor, idx: torch.Tensor, outside: torch.Tensor, rows: slice, spread: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked scores ``(R, n, h, t, K·s)``, the keys ``(R, n, K·s, d)`` and the block's queries ``(R, n, t, d)``.

        Keys outside the image get the spatial term ``-max/4`` of the dtype instead of ``-inf`` (a
        matmul cannot carry ``-inf``): their softmax weight is exactly zero all the same.
        """
        R, _, t, d = q.shape
        h, s = c.shape[2], c.shape[-1]
        n, K = rows.stop - rows.start, idx.shape[1]
        q_b = q[:, rows]  # (R, n, t, d)
        keys = k_pad.index_select(1, idx[rows].reshape(-1)).view(R, n, K * s, d)  # (R, n, K·s, d)
        spatial = (q_b.reshape(R, n * t, d) @ rho.transpose(-1, -2)).view(R, n, t, h, K).transpose(2, 3)  # q·ρ: (R, n, h, t, K)
        spatial = spatial.masked_fill(outside[rows][None, :, None, None, :], -0.25 * torch.finfo(q.dtype).max)
        terms = torch.cat([c[:, rows], spatial], dim=-1)  # [c, b]: (R, n, h, t, s + K)
        logits = (terms.view(-1, s + K) @ spread).view(R, n, h, t, K * s)  # c[h,t,s] + b[h,t,k]
        logits += (q_b @ keys.transpose(-1, -2)).unsqueeze(2)  # + q·k: (R, n, h, t, K·s)
        return logits, keys, q_b

    @staticmethod
    def forward(
        ctx, q: torch.Tensor, k_pad: torch.Tensor, v_pad: torch.Tensor, rho: torch.Tensor, c: torch.Tensor, idx: torch.Tensor, outside: torch.Tensor
    ) -> torch.Tensor:
        R, N, h, t, s = c.shape
        K, dv = idx.shape[1], v_pad.shape[-1]
        out = q.new_empty(R, N, h, dv)
        lse = q.new_empty(R, N, h, t)
        spread = _GroupWindowAttention._spread(s, K, q)
        for rows in _GroupWindowAttention._blocks(q, c, K):
            logits, _, _ = _GroupWindowAttention._scores(q, k_pad, rho, c, idx, outside, rows, spread)  # (R, n, h, t, K·s)
            top = logits.amax(dim=-1, keepdim=True)  # finite: the query's own pixel is inside
            probs = _exp_shifted(logits, top)
            total = probs.sum(dim=-1, keepdim=True)  # (R, n, h, t, 1)
            weights = probs.div_(total).sum(dim=3)  # Σ_t softmax: (R, n, h, K·s)
            values = v_pad.index_select(1, idx[rows].reshape(-1)).view(R, -1, K * s, dv)  # (R, n, K·s, d)
            out[:, rows] = weights @ values  # (R, n, h, d)
            lse[:, rows] = (total.log_() + top).squeeze(-1)
        ctx.save_for_backward(q, k_pad, v_pad, rho, c, idx, outside, lse)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k_pad, v_pad, rho, c, idx, outside, lse = ctx.saved_tensors
        R, N, h, t, s = c.shape
        K, d, dv = idx.shape[1], q.shape[-1], v_pad.shape[-1]
        grad_q, grad_c, grad_rho = torch.empty_like(q), torch.empty_like(c), torch.zeros_like(rho)
        grad_k, grad_v = torch.zeros_like(k_pad), torch.zeros_like(v_pad)
        spread = _GroupWindowAttention._spread(s, K, q)
        for rows in _GroupWindowAttention._blocks(q, c, K):
            n, flat = rows.stop - rows.start, idx[rows].reshape(-1)
            logits, keys, q_b = _GroupWindowAttention._scores(q, k_pad, rho, c, idx, outside, rows, spread)
            probs = _exp_shifted(logits, lse[:, rows].unsqueeze(-1))  # softmax: (R, n, h, t, K·s)
            values = v_pad.index_select(1, flat).view(R, n, K * s, dv)  # (R, n, K·s, d)
            g = grad[:, rows]  # (R, n, h, d)
            grad_v.index_add_(1, flat, (probs.sum(dim=3).transpose(-1, -2) @ g).view(R, n * K, s, dv))
            gv = (g @ values.transpose(-1, -2)).unsqueeze(3)  # g·v: (R, n, h, 1, K·s)
            dlogits = probs * gv
            dlogits.addcmul_(probs, dlogits.sum(dim=-1, keepdim=True), value=-1.0)  # p ⊙ (g·v − Σ p g·v)
            grad_content = dlogits.sum(dim=2)  # Σ_h: (R, n, t, K·s)
            grad_terms = (dlogits.view(-1, K * s) @ spread.T).view(R, n, h, t, s + K)  # [Σ_k, Σ_s] of the scores
            grad_c[:, rows] = grad_terms[..., :s]
            grad_spatial = grad_terms[..., s:].transpose(2, 3).reshape(R, n * t, h * K)  # (R, n·t, h·K); 0 outside
            grad_q[:, rows] = grad_content @ keys + (grad_spatial @ rho).view(R, n, t, d)
            grad_rho += grad_spatial.transpose(-1, -2) @ q_b.reshape(R, n * t, d)
            grad_k.index_add_(1, flat, (grad_content.transpose(-1, -2) @ q_b).view(R, n * K, s, d))
        return grad_q, grad_k, grad_v, grad_rho, grad_c, None, None


def group_window_attention(
    q: torch.Tensor, k_pad: torch.Tensor, v_pad: torch.Tensor, rho: torch.Tensor, c: torch.Tensor, idx: torch.Tensor, outside: torch.Tensor
) -> torch.Tensor:
    """The h-dependent group layer's attention (see :class:`_GroupWindowAttention`).

    16-bit inputs, and every input inside ``torch.autocast``, are computed in float32; the result has ``q``'s dtype.
    """
    with _without_autocast(q.device):
        out = _GroupWindowAttention.apply(*_in_float32(q, k_pad, v_pad, rho, c), idx, outside)
    return out.to(q.dtype)
