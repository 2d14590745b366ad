"""The two fused reductions behind the factorised group layer (chapter 9), with hand-written backwards.

* :func:`softmax_lse`: softmax and log-sum-exp over one axis in one pass.
* :func:`joint_sum`: the values summed with the joint weights ``U·a·e`` of the group layer's
  h-dependent encodings, without storing that ``|H|³·k²`` tensor, in blocks that stay in cache.

Both are checked against autograd with ``torch.autograd.gradcheck`` (tests/test_attention.py).
"""

from __future__ import annotations

import torch

__all__ = ["softmax_lse", "joint_sum"]


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


class _JointSum(torch.autograd.Function):
    """``out[h] = Σ_t Σ_{k,s} U[h,t,k]·a[t,k,s]·e[h,t,s]·v[k,s]``: the group layer's values summed with
    the joint weights ``U·a·e``, which are never stored.

    The joint weights are a ``|H|³·k²`` tensor per pixel; forward keeps only their sum over ``t``
    (``|H|²·k²``) and backward rebuilds the three products it needs from the factors (five
    passes over a ``|H|³·k²`` tensor in all, against about twenty-five for autograd through the
    explicit weights and their recomputation).

    Shapes (leading batch axes ``…``): ``a (…, t, K, s)``, ``e (…, h, t, s)``, ``U (…, h, t, K)``,
    ``v (…, K, s, d)`` -> ``(…, h, d)``.
    """

    #: Pixels per block: the ``|H|³·k²`` products of one block stay in the processor's cache.
    block_numbers = 2**17

    @staticmethod
    def _blocks(a: torch.Tensor, e: torch.Tensor) -> list[slice]:
        """Slices of the pixel axis (``-4`` of ``a``, after flattening the leading axes)."""
        rows = a.shape[:-3].numel()
        per_row = e.shape[-3] * a.shape[-3] * a.shape[-2] * a.shape[-1]  # h·t·K·s
        step = max(1, _JointSum.block_numbers // max(per_row, 1))
        return [slice(i, min(i + step, rows)) for i in range(0, rows, step)]

    @staticmethod
    def forward(ctx, a: torch.Tensor, e: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        lead = a.shape[:-3]
        a2, e2, u2 = a.reshape(-1, *a.shape[-3:]), e.reshape(-1, *e.shape[-3:]), u.reshape(-1, *u.shape[-3:])
        total = a2.new_empty(a2.shape[0], e2.shape[-3], a2.shape[-2], a2.shape[-1])  # (rows, h, K, s)
        for rows in _JointSum._blocks(a, e):
            joint = a2[rows].unsqueeze(1) * e2[rows].unsqueeze(-2)  # a·e: (rows, h, t, K, s)
            torch.sum(joint.mul_(u2[rows].unsqueeze(-1)), dim=2, out=total[rows])  # Σ_t U·a·e
        total = total.view(*lead, *total.shape[1:])
        ctx.save_for_backward(a, e, u, v, total)
        return total.flatten(-2) @ v.flatten(-3, -2)  # (…, h, K·s) @ (…, K·s, d)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a, e, u, v, total = ctx.saved_tensors
        values = v.flatten(-3, -2)  # (…, K·s, d)
        grad_v = (total.flatten(-2).transpose(-1, -2) @ grad).view_as(v)  # Σ_h total·g: (…, K, s, d)
        gv = (grad @ values.transpose(-1, -2)).view(-1, *total.shape[-3:])  # g·v: (rows, h, K, s)
        a2, e2, u2 = a.reshape(-1, *a.shape[-3:]), e.reshape(-1, *e.shape[-3:]), u.reshape(-1, *u.shape[-3:])
        grad_a, grad_e, grad_u = torch.empty_like(a2), torch.empty_like(e2), torch.empty_like(u2)
        for rows in _JointSum._blocks(a, e):
            g = gv[rows].unsqueeze(2)  # (rows, h, 1, K, s)
            ug = g * u2[rows].unsqueeze(-1)  # U·(g·v): (rows, h, t, K, s)
            ea = e2[rows].unsqueeze(-2)  # (rows, h, t, 1, s)
            torch.sum(ug * ea, dim=1, out=grad_a[rows])  # Σ_h U e (g·v)
            aa = a2[rows].unsqueeze(1)  # (rows, 1, t, K, s)
            torch.sum(ug.mul_(aa), dim=-2, out=grad_e[rows])  # Σ_k U a (g·v)
            torch.sum((aa * ea).mul_(g), dim=-1, out=grad_u[rows])  # Σ_s a e (g·v)
        return grad_a.view_as(a), grad_e.view_as(e), grad_u.view_as(u), grad_v


def joint_sum(a: torch.Tensor, e: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``Σ_t Σ_{k,s} U[h,t,k] a[t,k,s] e[h,t,s] v[k,s]`` (see :class:`_JointSum`); 16-bit inputs in float32."""
    if a.dtype in (torch.float16, torch.bfloat16):
        return _JointSum.apply(a.float(), e.float(), u.float(), v.float()).to(a.dtype)
    return _JointSum.apply(a, e, u, v)
