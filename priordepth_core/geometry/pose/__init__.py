"""Differentiable, batched pose solvers (essential matrix, PnP, Procrustes), robust wrappers and triangulation."""

from .pnp import solve_pnp, solve_pnp_ransac
from .procrustes import solve_procrustes
from .result import PoseEstimate

__all__ = ["PoseEstimate", "solve_pnp", "solve_pnp_ransac", "solve_procrustes"]
