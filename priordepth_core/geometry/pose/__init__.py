"""Differentiable, batched pose solvers (essential matrix, PnP, Procrustes), robust wrappers and triangulation."""

from .result import PoseEstimate

__all__ = ["PoseEstimate"]
