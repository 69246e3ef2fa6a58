"""Robust refinement of a relative pose on the essential manifold, differentiable through its optimum.

The pose is ``(R, t)`` with R in SO(3) and t on the unit sphere (5 degrees of freedom): a step ``delta`` (5,) moves
it to ``R exp([delta_0:3]x)`` and ``normalise(t + delta_3 b_1 + delta_4 b_2)`` with ``b_1, b_2`` an orthonormal basis of
the tangent plane at t. The cost is the weighted Cauchy loss of the signed Sampson distance in pixels,

    L = sum_i w_i c^2 log(1 + r_i^2 / c^2),  r_i = x2_i^T F x1_i / |(F x1_i)_12, (F^T x2_i)_12|,

with ``F = K2^-T [t]x R K1^-1``,

minimised by Levenberg-Marquardt on the iteratively reweighted Gauss-Newton system, finished by a few Newton steps
with the exact Hessian so that the returned pose is a stationary point to rounding precision.

Gradients: the optimum ``theta*(x, w)`` satisfies ``g(theta*, x, w) = dL/dtheta = 0``, so by the implicit function
theorem ``dtheta*/dx = -H^-1 dg/dx`` with ``H = dg/dtheta``. :class:`_ImplicitRefinement` computes exactly that in its
backward (``torch.func`` for g, H and the vector-Jacobian product of g), instead of unrolling the iterations or the
RANSAC that found the start. Where H is not positive definite (degenerate problem, flagged invalid) the gradient is
zero, not NaN.
"""

from __future__ import annotations

import torch
from torch.func import grad, jacfwd, vjp, vmap

from ..se3 import skew, so3_exp

# Denominator floor of the Sampson distance (pixels^2 scale): a point at both epipoles has no defined distance.
SAMPSON_DENOMINATOR_FLOOR = 1e-18
# Levenberg-Marquardt: initial damping (relative to the diagonal), its factors on rejection / acceptance.
LM_INITIAL_DAMPING = 1e-4
LM_DAMPING_UP = 10.0
LM_DAMPING_DOWN = 0.3
LM_MAX_DAMPING = 1e8
# LM stops when every problem's step is below this (radians / unit-sphere tangent units; 1e-7 rad moves a point by
# 1e-4 px at f = 1000 px). Iteratively reweighted Cauchy steps converge linearly on noisy data, so a tighter
# tolerance costs iterations for nothing measurable; with gradients the Newton steps then make the optimum exact.
STEP_TOLERANCE = 1e-7
# Newton steps with the exact Hessian after LM (quadratic convergence to the stationary point the IFT assumes).
NEWTON_STEPS = 3
# H counts as positive definite when its smallest eigenvalue exceeds this fraction of its largest.
HESSIAN_RCOND = 1e-12


def tangent_basis(t: torch.Tensor) -> torch.Tensor:
    """(..., 3) unit vectors -> (..., 3, 2) orthonormal basis of the plane orthogonal to each."""
    axis = torch.nn.functional.one_hot(t.abs().argmin(-1), 3).to(t.dtype)  # the axis least aligned with t
    b1 = torch.nn.functional.normalize(torch.linalg.cross(t, axis, dim=-1), dim=-1)
    b2 = torch.linalg.cross(t, b1, dim=-1)
    return torch.stack([b1, b2], dim=-1)


def retract(R: torch.Tensor, t: torch.Tensor, delta: torch.Tensor, basis: torch.Tensor):
    """Move ``(R (..., 3, 3), t (..., 3))`` by ``delta`` (..., 5) in the tangent ``basis`` (..., 3, 2) of t."""
    R_new = R @ so3_exp(delta[..., :3])
    t_new = t + (basis @ delta[..., 3:].unsqueeze(-1)).squeeze(-1)
    return R_new, t_new / t_new.norm(dim=-1, keepdim=True)


def sampson_residuals(R: torch.Tensor, t: torch.Tensor, x1h: torch.Tensor, x2h: torch.Tensor,
                      K1_inv: torch.Tensor, K2_inv: torch.Tensor) -> torch.Tensor:
    """Signed Sampson distances in pixels.

    Args:
        R: (..., 3, 3), t: (..., 3) relative pose ``X2 = R X1 + t``.
        x1h, x2h: (..., N, 3) homogeneous pixels (z = 1).
        K1_inv, K2_inv: (..., 3, 3) inverse intrinsics.

    Returns:
        (..., N) ``x2^T F x1 / sqrt(|(F x1)_12|^2 + |(F^T x2)_12|^2)``.
    """
    F = K2_inv.transpose(-1, -2) @ skew(t) @ R @ K1_inv
    Fx1 = x1h @ F.transpose(-1, -2)  # (..., N, 3)
    Ftx2 = x2h @ F
    numerator = (x2h * Fx1).sum(-1)
    denominator = Fx1[..., :2].square().sum(-1) + Ftx2[..., :2].square().sum(-1)
    return numerator / denominator.clamp_min(SAMPSON_DENOMINATOR_FLOOR).sqrt()


def _sampson_residuals_columns(R, t, x1_t, x2_t, K1_inv, K2_inv):
    """:func:`sampson_residuals` with points as columns (B, 3, N): batched matmuls and contiguous slices, 3x faster
    in the LM loop."""
    F = K2_inv.transpose(-1, -2) @ skew(t) @ R @ K1_inv
    Fx1, Ftx2 = F @ x1_t, F.transpose(-1, -2) @ x2_t
    numerator = Fx1[:, 0] * x2_t[:, 0] + Fx1[:, 1] * x2_t[:, 1] + Fx1[:, 2] * x2_t[:, 2]
    denominator = Fx1[:, 0].square() + Fx1[:, 1].square() + Ftx2[:, 0].square() + Ftx2[:, 1].square()
    return numerator / denominator.clamp_min(SAMPSON_DENOMINATOR_FLOOR).sqrt()


def cauchy_cost(residuals: torch.Tensor, weights: torch.Tensor, scale: float) -> torch.Tensor:
    """(..., N) residuals and weights -> (...,) ``sum w c^2 log(1 + r^2 / c^2)``."""
    return (weights * scale**2 * torch.log1p(residuals.square() / scale**2)).sum(-1)


def _local_cost(delta, R, t, basis, x1h, x2h, w, K1_inv, K2_inv, scale):
    """Cost of one problem (no batch dimension) at ``retract(R, t, delta)``; the function torch.func differentiates."""
    R_new, t_new = retract(R, t, delta, basis)
    return cauchy_cost(sampson_residuals(R_new, t_new, x1h, x2h, K1_inv, K2_inv), w, scale)


def residuals_and_jacobian(R: torch.Tensor, t: torch.Tensor, basis: torch.Tensor, x1_t: torch.Tensor,
                           x2_t: torch.Tensor, K1_inv: torch.Tensor, K2_inv: torch.Tensor):
    """Sampson residuals and their Jacobian w.r.t. the tangent step at ``(R, t)``.

    Args:
        R (B, 3, 3), t (B, 3), basis (B, 3, 2): the pose and the tangent basis of t.
        x1_t, x2_t: (B, 3, N) homogeneous pixels as columns.
        K1_inv, K2_inv: (B, 3, 3).

    Returns:
        residuals (B, N) and Jacobian (B, 5, N).

    Analytic (``dE/d delta_k = [t]x R [e_k]x`` for the rotation, ``[b_j]x R`` for the translation) with points as
    columns, so every product is a batched matmul and every slice contiguous: 4x faster than ``vmap(jacfwd(...))``
    at B = 96, N = 500, without its 1.9 s tracing on the first call.
    """
    A, C = K2_inv.transpose(-1, -2), K1_inv
    B, N = x1_t.shape[0], x1_t.shape[2]
    generators = skew(torch.eye(3, dtype=R.dtype, device=R.device))  # (3, 3, 3): [e_k]x
    tx_R = skew(t) @ R
    dE = torch.cat([tx_R.unsqueeze(1) @ generators, skew(basis.transpose(-1, -2)) @ R.unsqueeze(1)], dim=1)
    F = A @ tx_R @ C  # (B, 3, 3)
    dF = A.unsqueeze(1) @ dE @ C.unsqueeze(1)  # (B, 5, 3, 3)
    Fx1, Ftx2 = F @ x1_t, F.transpose(-1, -2) @ x2_t  # (B, 3, N)
    dFx1 = (dF[..., :2, :].reshape(B, 10, 3) @ x1_t).view(B, 5, 2, N)  # rows 0, 1 of dF_k x1
    dFtx2 = (dF[..., :, :2].transpose(-1, -2).reshape(B, 10, 3) @ x2_t).view(B, 5, 2, N)
    numerator = Fx1[:, 0] * x2_t[:, 0] + Fx1[:, 1] * x2_t[:, 1] + Fx1[:, 2] * x2_t[:, 2]  # (B, N)
    outer = (x2_t.unsqueeze(2) * x1_t.unsqueeze(1)).reshape(B, 9, N)
    d_numerator = dF.reshape(B, 5, 9) @ outer  # (B, 5, N): x2^T dF_k x1
    denominator = (Fx1[:, 0].square() + Fx1[:, 1].square() + Ftx2[:, 0].square() + Ftx2[:, 1].square()
                   ).clamp_min(SAMPSON_DENOMINATOR_FLOOR)
    d_denominator = 2 * (dFx1[:, :, 0] * Fx1[:, None, 0] + dFx1[:, :, 1] * Fx1[:, None, 1]
                         + dFtx2[:, :, 0] * Ftx2[:, None, 0] + dFtx2[:, :, 1] * Ftx2[:, None, 1])
    root = denominator.sqrt()
    residuals = numerator / root
    jacobian = d_numerator / root.unsqueeze(1) - 0.5 * (residuals / denominator).unsqueeze(1) * d_denominator
    return residuals, jacobian


_local_gradient = grad(_local_cost)
_batched_gradient = vmap(_local_gradient, in_dims=(0, 0, 0, 0, 0, 0, 0, 0, 0, None))
_batched_hessian = vmap(jacfwd(_local_gradient), in_dims=(0, 0, 0, 0, 0, 0, 0, 0, 0, None))


def _positive_definite_solve(H: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve (B, 5, 5) H x = b (B, 5) where H is safely positive definite; elsewhere x = 0 and ok = False."""
    evals = torch.linalg.eigvalsh(H)
    ok = torch.isfinite(evals).all(-1) & (evals[:, 0] > HESSIAN_RCOND * evals[:, -1].abs().clamp_min(1e-300))
    eye = torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
    H_safe = torch.where(ok[:, None, None], H, eye)
    x = torch.linalg.solve(H_safe, b.unsqueeze(-1)).squeeze(-1)
    return torch.where(ok[:, None], x, torch.zeros_like(x)), ok


@torch.no_grad()
def refine_pose(R: torch.Tensor, t: torch.Tensor, x1h: torch.Tensor, x2h: torch.Tensor, weights: torch.Tensor,
                K1_inv: torch.Tensor, K2_inv: torch.Tensor, scale: float, iterations: int = 10,
                newton_steps: int = 0, step_tolerance: float = STEP_TOLERANCE
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Levenberg-Marquardt on the robust Sampson cost, batched (no gradients; see :func:`refine_pose_differentiable`).

    Args:
        R: (B, 3, 3), t: (B, 3) start (t of unit length).
        x1h, x2h: (B, N, 3) homogeneous pixels; weights: (B, N) non-negative.
        K1_inv, K2_inv: (B, 3, 3).
        scale: Cauchy scale c in pixels (residuals well below c count fully, far above it barely).
        iterations: LM iterations (each accepts or rejects one damped Gauss-Newton step per problem).
        newton_steps: extra steps with the exact Hessian (where positive definite) for a stationary point.
        step_tolerance: LM stops early once every problem's step is below this.

    Returns:
        R (B, 3, 3), t (B, 3) and the final cost (B,).
    """
    x1_t, x2_t = x1h.transpose(1, 2).contiguous(), x2h.transpose(1, 2).contiguous()
    cost = cauchy_cost(_sampson_residuals_columns(R, t, x1_t, x2_t, K1_inv, K2_inv), weights, scale)
    damping = torch.full_like(cost, LM_INITIAL_DAMPING)
    zero = torch.zeros(R.shape[0], 5, dtype=R.dtype, device=R.device)
    for _ in range(iterations):
        basis = tangent_basis(t)
        r, J = residuals_and_jacobian(R, t, basis, x1_t, x2_t, K1_inv, K2_inv)  # (B, N), (B, 5, N)
        irls = weights / (1.0 + r.square() / scale**2)  # Cauchy weights
        JtW = J * irls.unsqueeze(1)
        A, b = JtW @ J.transpose(1, 2), -(JtW @ r.unsqueeze(-1)).squeeze(-1)
        A_damped = A + damping[:, None, None] * A.diagonal(dim1=-2, dim2=-1).clamp_min(1e-12).diag_embed()
        step, info = torch.linalg.solve_ex(A_damped, b.unsqueeze(-1))
        step = torch.where((info == 0)[:, None] & torch.isfinite(step[..., 0]).all(-1, keepdim=True),
                           step[..., 0], zero)
        R_try, t_try = retract(R, t, step, basis)
        cost_try = cauchy_cost(_sampson_residuals_columns(R_try, t_try, x1_t, x2_t, K1_inv, K2_inv), weights, scale)
        accept = torch.isfinite(cost_try) & (cost_try <= cost)
        R = torch.where(accept[:, None, None], R_try, R)
        t = torch.where(accept[:, None], t_try, t)
        cost = torch.where(accept, cost_try, cost)
        damping = torch.where(accept, damping * LM_DAMPING_DOWN, (damping * LM_DAMPING_UP).clamp_max(LM_MAX_DAMPING))
        # Every problem's step below the tolerance: converged (one host sync per iteration, saves most iterations
        # on small batches, where each costs its fixed op overhead).
        if not bool((step.abs().amax(-1) > step_tolerance).any()):
            break
    for _ in range(newton_steps):
        basis = tangent_basis(t)
        g = _batched_gradient(zero, R, t, basis, x1h, x2h, weights, K1_inv, K2_inv, scale)
        H = _batched_hessian(zero, R, t, basis, x1h, x2h, weights, K1_inv, K2_inv, scale)
        step, _ = _positive_definite_solve(H, -g)
        R_try, t_try = retract(R, t, step, basis)
        cost_try = cauchy_cost(_sampson_residuals_columns(R_try, t_try, x1_t, x2_t, K1_inv, K2_inv), weights, scale)
        # Near the optimum the cost changes at rounding level; a relative tolerance keeps the Newton step there.
        accept = torch.isfinite(cost_try) & (cost_try <= cost + 1e-12 * cost.abs() + 1e-300)
        R = torch.where(accept[:, None, None], R_try, R)
        t = torch.where(accept[:, None], t_try, t)
        cost = torch.where(accept, cost_try, cost)
    return R, t, cost


class _ImplicitRefinement(torch.autograd.Function):
    """(x1h, x2h, weights, K1_inv, K2_inv) -> refined (R, t); backward by the implicit function theorem."""

    @staticmethod
    def forward(ctx, x1h, x2h, weights, K1_inv, K2_inv, R0, t0, scale, iterations, active):
        # The Newton steps (exact Hessian, 4x the cost of an LM step) make the optimum exact for the implicit
        # gradient; without gradients LM's optimum is as good as the data.
        newton_steps = NEWTON_STEPS if any(ctx.needs_input_grad[:5]) else 0
        R, t, _ = refine_pose(R0, t0, x1h, x2h, weights, K1_inv, K2_inv, scale, iterations, newton_steps)
        ctx.save_for_backward(x1h, x2h, weights, K1_inv, K2_inv, R, t, active)
        ctx.scale = scale
        return R, t

    @staticmethod
    def backward(ctx, grad_R, grad_t):
        x1h, x2h, weights, K1_inv, K2_inv, R, t, active = ctx.saved_tensors
        scale = ctx.scale
        basis = tangent_basis(t)
        zero = torch.zeros(R.shape[0], 5, dtype=R.dtype, device=R.device)
        generators = skew(torch.eye(3, dtype=R.dtype, device=R.device))  # (3, 3, 3): [e_k]x
        # Output derivative along each tangent direction: dR/d delta_k = R [e_k]x, dt/d delta_{3+j} = b_j.
        grad_rotation = torch.einsum("bij,bil,klj->bk", grad_R, R, generators)  # <grad_R, R [e_k]x>
        grad_translation = (grad_t.unsqueeze(-1) * basis).sum(-2)  # (B, 2)
        grad_delta = torch.cat([grad_rotation, grad_translation], dim=-1)  # (B, 5)
        H = _batched_hessian(zero, R, t, basis, x1h, x2h, weights, K1_inv, K2_inv, scale)
        u, ok = _positive_definite_solve(H, grad_delta)
        u = torch.where((ok & active)[:, None], u, torch.zeros_like(u))

        def gradient_of_inputs(x1h_, x2h_, w_, K1_inv_, K2_inv_):
            return _batched_gradient(zero, R, t, basis, x1h_, x2h_, w_, K1_inv_, K2_inv_, scale)

        _, pullback = vjp(gradient_of_inputs, x1h, x2h, weights, K1_inv, K2_inv)
        grads = pullback(-u)
        grads = tuple(torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0) for g in grads)
        return (*grads, None, None, None, None, None)


def refine_pose_differentiable(R0: torch.Tensor, t0: torch.Tensor, x1h: torch.Tensor, x2h: torch.Tensor,
                               weights: torch.Tensor, K1_inv: torch.Tensor, K2_inv: torch.Tensor, scale: float,
                               iterations: int = 20, active: torch.Tensor | None = None
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust refinement whose result is differentiable w.r.t. the points, weights and intrinsics (float64).

    Args:
        R0: (B, 3, 3), t0: (B, 3) start (from RANSAC; not differentiated: the optimum does not depend on it).
        x1h, x2h: (B, N, 3) homogeneous pixels; weights: (B, N).
        K1_inv, K2_inv: (B, 3, 3) inverse intrinsics.
        scale: Cauchy scale in pixels.
        iterations: LM iterations before the Newton steps.
        active: (B,) bool; problems marked False (invalid) get zero gradients.

    Returns:
        R (B, 3, 3), t (B, 3) at the optimum, with implicit-function-theorem gradients.
    """
    if active is None:
        active = torch.ones(R0.shape[0], dtype=torch.bool, device=R0.device)
    return _ImplicitRefinement.apply(x1h, x2h, weights, K1_inv, K2_inv, R0.detach(), t0.detach(), scale, iterations,
                                     active)
