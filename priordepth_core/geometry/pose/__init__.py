"""Differentiable, batched pose solvers (essential matrix, PnP, Procrustes), robust wrappers and triangulation."""

from .essential import sampson_distance_sq, solve_essential, solve_essential_ransac_8pt
from .five_point import solve_five_point
from .lo_ransac import solve_essential_ransac
from .pnp import solve_pnp, solve_pnp_ransac
from .procrustes import solve_procrustes
from .result import PoseEstimate
from .synthetic_problems import TwoViewProblem, make_two_view_problems
from .triangulation import Triangulation, recover_translation_scale, triangulate, triangulate_with_info

__all__ = [
    "PoseEstimate",
    "Triangulation",
    "TwoViewProblem",
    "make_two_view_problems",
    "recover_translation_scale",
    "sampson_distance_sq",
    "solve_essential",
    "solve_essential_ransac",
    "solve_essential_ransac_8pt",
    "solve_five_point",
    "solve_pnp",
    "solve_pnp_ransac",
    "solve_procrustes",
    "triangulate",
    "triangulate_with_info",
]
