"""Differentiable, batched pose solvers (essential matrix, PnP, Procrustes), robust wrappers and triangulation."""

from .procrustes import solve_procrustes
from .result import PoseEstimate

__all__ = ["PoseEstimate", "solve_procrustes"]
