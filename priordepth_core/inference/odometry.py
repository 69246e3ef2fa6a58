"""Accumulating relative poses into ``T_odom_curr`` and propagating their covariance.

Uncertainty is kept as a covariance of a right (body-frame) perturbation ``T exp(xi)``, ``xi = (v, omega)``, so that
chaining ``T_odom_curr = T_odom_ref T_ref_curr`` propagates as

    Sigma_curr = Ad(T_curr_ref) Sigma_ref Ad(T_curr_ref)^T + Sigma_rel,

and is reported to ROS in the odometry frame (position and rotation perturbations both in ``odom`` axes, the
``x y z roll pitch yaw`` order of nav_msgs for small angles): ``diag(R, R) Sigma diag(R, R)^T`` with ``R`` the
rotation of ``T_odom_curr``.
"""

from __future__ import annotations

import numpy as np

from ..geometry.se3 import invert_transform_np, skew_np


def adjoint(T: np.ndarray) -> np.ndarray:
    """(6, 6) adjoint of a (4, 4) transform for tangents ordered (v, omega): ``[[R, [t]x R], [0, R]]``."""
    R, t = T[:3, :3], T[:3, 3]
    A = np.zeros((6, 6))
    A[:3, :3] = R
    A[:3, 3:] = skew_np(t) @ R
    A[3:, 3:] = R
    return A


def rotate_covariance(covariance: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Express a (v, omega) covariance of a body perturbation in the axes rotated by ``R``: ``B C B^T``."""
    B = np.zeros((6, 6))
    B[:3, :3] = R
    B[3:, 3:] = R
    return B @ covariance @ B.T


def relative_covariance_from_pnp(covariance_curr: np.ndarray) -> np.ndarray:
    """Body-perturbation covariance of ``T_ref_curr`` from the left-perturbation covariance of ``T_curr_ref``.

    ``exp(delta) T_curr_ref`` inverts to ``T_ref_curr exp(-delta)``: the same covariance, now a right perturbation
    of ``T_ref_curr`` expressed in the current camera's axes.
    """
    return covariance_curr.copy()


def propagate(covariance_ref: np.ndarray, T_ref_curr: np.ndarray, covariance_rel: np.ndarray) -> np.ndarray:
    """Body-frame covariance of ``T_odom_curr = T_odom_ref T_ref_curr`` (see the module docstring)."""
    A = adjoint(invert_transform_np(T_ref_curr))
    covariance = A @ covariance_ref @ A.T + covariance_rel
    return 0.5 * (covariance + covariance.T)


def orthonormalise(T: np.ndarray) -> np.ndarray:
    """Project the rotation block back onto SO(3) (long products of float64 rotations drift slowly)."""
    U, _, Vt = np.linalg.svd(T[:3, :3])
    R = U @ Vt
    if np.linalg.det(R) < 0:
        U[:, -1] *= -1
        R = U @ Vt
    out = T.copy()
    out[:3, :3] = R
    out[3] = (0.0, 0.0, 0.0, 1.0)
    return out
