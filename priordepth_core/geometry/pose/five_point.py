"""Batched minimal 5-point relative pose solver (Stewénius, Engels & Nistér 2006, action-matrix form).

Five correspondences in normalised camera coordinates give a 5 x 9 linear system ``kron(p2, p1) . vec(E) = 0``; its
four-dimensional null space ``E = x X + y Y + z Z + W`` leaves three unknowns, fixed by the ten cubic constraints
of an essential matrix (``det E = 0`` and ``2 E E^T E - tr(E E^T) E = 0``). Gauss-Jordan elimination of the 10 x 20
coefficient matrix (monomials in graded order, the ten cubics first) expresses every cubic monomial in the ten
monomials of degree <= 2, which span the quotient ring; multiplication by x in that basis is the 10 x 10 action
matrix, whose eigenvectors are the basis monomials evaluated at the solutions. Real eigenvalues give up to ten real
essential matrices.

Why our own rather than kornia 0.9's batched ``run_5point`` (Nistér's degree-10 polynomial from hand-expanded
coefficients): on 4096 noise-free minimal problems (driving-like, float64, one thread) kornia's candidates missed the
true E by more than 1e-6 (Frobenius, unit norm) on 0.39 % of the problems, worst 5e-2; the action-matrix form here on
0.05 %, worst 7e-6, with the same number of real roots (4.8 on average). Kornia was about 1.6x faster (48 against
78 us per problem on the loaded 2-core machine); accuracy of the minimal solver bounds how many hypotheses RANSAC
needs, so we keep the accurate one. Every problem of a (..., 5) batch — B problems x H hypotheses — is solved at
once with one batched SVD, one batched 10 x 10 solve and one batched eigendecomposition.
"""

from __future__ import annotations

import itertools

import torch

# Monomials of degree <= 3 in (x, y, z) as exponent triples: the ten cubics first, then the quotient-ring basis
# (degree <= 2). The basis order fixes the action matrix below: BASIS[6:9] = (x, y, z), BASIS[9] = 1.
CUBICS = ((3, 0, 0), (2, 1, 0), (2, 0, 1), (1, 2, 0), (1, 1, 1), (1, 0, 2), (0, 3, 0), (0, 2, 1), (0, 1, 2), (0, 0, 3))
BASIS = ((2, 0, 0), (1, 1, 0), (1, 0, 1), (0, 2, 0), (0, 1, 1), (0, 0, 2), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0))
MONOMIALS_3 = CUBICS + BASIS
MONOMIALS_2 = BASIS
MONOMIALS_1 = ((1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0))
# An eigenvalue counts as real when its imaginary part is below this fraction of its modulus (plus an absolute
# floor): exact solutions have imaginary parts at rounding level, complex pairs of real problems are far from it.
REAL_ROOT_RTOL = 1e-6
REAL_ROOT_ATOL = 1e-9
MAX_SOLUTIONS = 10


def _multiplication_table(left: tuple, right: tuple, out: tuple) -> torch.Tensor:
    """(len(left), len(right), len(out)) 0/1 tensor T with ``left_a * right_b = out_c`` iff T[a, b, c] = 1."""
    index = {m: i for i, m in enumerate(out)}
    table = torch.zeros(len(left), len(right), len(out), dtype=torch.float64)
    for (a, ma), (b, mb) in itertools.product(enumerate(left), enumerate(right)):
        table[a, b, index[tuple(u + v for u, v in zip(ma, mb))]] = 1.0
    return table


TABLE_1x1 = _multiplication_table(MONOMIALS_1, MONOMIALS_1, MONOMIALS_2)  # (4, 4, 10)
TABLE_2x1 = _multiplication_table(MONOMIALS_2, MONOMIALS_1, MONOMIALS_3)  # (10, 4, 20)


def _constraint_matrix(null_basis: torch.Tensor) -> torch.Tensor:
    """The ten cubic essential-matrix constraints as a (..., 10, 20) coefficient matrix.

    Args:
        null_basis: (..., 4, 9) the null vectors X, Y, Z, W (row-major E), so ``E = x X + y Y + z Z + W``.

    Returns:
        (..., 10, 20) coefficients over ``MONOMIALS_3``: row 0 is ``det E``, rows 1..9 ``2 E E^T E - tr(E E^T) E``.
    """
    T11 = TABLE_1x1.to(null_basis)
    T21 = TABLE_2x1.to(null_basis)
    E = null_basis.transpose(-1, -2).unflatten(-2, (3, 3))  # (..., 3, 3, 4): each entry a linear polynomial

    def mul11(a, b):  # (..., 4) x (..., 4) -> (..., 10)
        return torch.einsum("...a,...b,abc->...c", a, b, T11)

    def mul21(a, b):  # (..., 10) x (..., 4) -> (..., 20)
        return torch.einsum("...a,...b,abc->...c", a, b, T21)

    # E E^T: (..., 3, 3, 10), entry (i, j) = sum_k E_ik E_jk.
    EEt = torch.einsum("...ika,...jkb,abc->...ijc", E, E, T11)
    trace = EEt[..., 0, 0, :] + EEt[..., 1, 1, :] + EEt[..., 2, 2, :]  # (..., 10)
    # (E E^T E)_ij = sum_k (E E^T)_ik E_kj.
    EEtE = torch.einsum("...ika,...kjb,abc->...ijc", EEt, E, T21)  # (..., 3, 3, 20)
    trace_E = torch.einsum("...a,...ijb,abc->...ijc", trace, E, T21)
    trace_constraints = (2.0 * EEtE - trace_E).flatten(-3, -2)  # (..., 9, 20)
    # det E = E_0 . (E_1 x E_2) with rows E_i.
    r0, r1, r2 = E[..., 0, :, :], E[..., 1, :, :], E[..., 2, :, :]
    cross = torch.stack([mul11(r1[..., 1, :], r2[..., 2, :]) - mul11(r1[..., 2, :], r2[..., 1, :]),
                         mul11(r1[..., 2, :], r2[..., 0, :]) - mul11(r1[..., 0, :], r2[..., 2, :]),
                         mul11(r1[..., 0, :], r2[..., 1, :]) - mul11(r1[..., 1, :], r2[..., 0, :])], dim=-2)
    det = sum(mul21(cross[..., k, :], r0[..., k, :]) for k in range(3))  # (..., 20)
    return torch.cat([det.unsqueeze(-2), trace_constraints], dim=-2)


def _action_matrix(reduced: torch.Tensor) -> torch.Tensor:
    """(..., 10, 10) multiplication-by-x matrix from the eliminated system ``cubic_k = -reduced[k] . BASIS``.

    Row i gives ``x * BASIS[i]`` in the basis: x*x^2, x*xy, x*xz, x*y^2, x*yz, x*z^2 are the cubics 0..5 (reduced
    rows), and x*x, x*y, x*z, x*1 are the basis monomials x^2, xy, xz, x.
    """
    M = torch.zeros_like(reduced)
    M[..., :6, :] = -reduced[..., :6, :]
    M[..., 6, 0] = 1.0
    M[..., 7, 1] = 1.0
    M[..., 8, 2] = 1.0
    M[..., 9, 6] = 1.0
    return M


def _epipolar_rows(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    return (p2.unsqueeze(-1) * p1.unsqueeze(-2)).flatten(-2)


def solve_five_point(p1: torch.Tensor, p2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All real essential matrices of minimal 5-point problems, batched.

    Args:
        p1: (..., 5, 3) normalised camera coordinates ``K1^-1 x1`` (homogeneous, any positive scale) in image 1.
        p2: (..., 5, 3) the matching coordinates in image 2.

    Returns:
        E: (..., 10, 3, 3) essential matrices with ``p2^T E p1 = 0``, unit Frobenius norm, float64; slots without a
            real solution hold zeros.
        valid: (..., 10) bool, True for the slots holding a real solution (at most 10, typically 2 to 6).

    Degenerate or non-finite inputs give ``valid`` False in every slot (no exception).

    Example:
        >>> from priordepth_core.geometry.pose.synthetic_problems import make_two_view_problems
        >>> p = make_two_view_problems(1, 5, generator=torch.Generator().manual_seed(0))
        >>> ones = torch.ones(1, 5, 1, dtype=torch.float64)
        >>> K_inv = torch.linalg.inv(p.K)
        >>> E, valid = solve_five_point(torch.cat([p.x1, ones], -1) @ K_inv.mT, torch.cat([p.x2, ones], -1) @ K_inv.mT)
        >>> E.shape, bool(valid.any())
        (torch.Size([1, 10, 3, 3]), True)
    """
    if p1.shape != p2.shape or p1.shape[-2:] != (5, 3):
        raise ValueError(f"p1 and p2 must both be (..., 5, 3), got {tuple(p1.shape)} and {tuple(p2.shape)}")
    batch_shape = p1.shape[:-2]
    p1, p2 = p1.double().reshape(-1, 5, 3), p2.double().reshape(-1, 5, 3)
    finite = torch.isfinite(p1).flatten(1).all(-1) & torch.isfinite(p2).flatten(1).all(-1)
    p1 = torch.where(finite[:, None, None], p1, torch.ones_like(p1))
    p2 = torch.where(finite[:, None, None], p2, torch.ones_like(p2))
    # Unit rows: the null space does not change and the SVD stays well scaled.
    rows = _epipolar_rows(p1, p2)  # (M, 5, 9)
    rows = rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    _, singular, Vh = torch.linalg.svd(rows, full_matrices=True)  # Vh (M, 9, 9)
    null_basis = Vh[:, 5:, :]  # (M, 4, 9): X, Y, Z, W
    # A rank-deficient 5 x 9 system (repeated or collinear points) has a larger null space: no unique solution set.
    rank_ok = singular[:, 4] > 1e-10 * singular[:, 0]
    C = _constraint_matrix(null_basis)  # (M, 10, 20)
    lead, rest = C[..., :10], C[..., 10:]
    # Gauss-Jordan elimination as a batched solve; a singular leading block (degenerate configuration) is flagged
    # by LAPACK's info and its result discarded, so the batch never raises.
    reduced, info = torch.linalg.solve_ex(lead, rest)  # (M, 10, 10)
    lead_ok = (info == 0) & torch.isfinite(reduced).flatten(1).all(-1)
    reduced = torch.where(lead_ok[:, None, None], reduced, torch.zeros_like(reduced))
    action = _action_matrix(reduced)
    eigenvalues, eigenvectors = torch.linalg.eig(action)  # (M, 10), (M, 10, 10): columns are eigenvectors
    vectors = eigenvectors.transpose(-1, -2)  # (M, 10 solutions, 10 basis entries)
    is_real = eigenvalues.imag.abs() <= REAL_ROOT_RTOL * eigenvalues.abs() + REAL_ROOT_ATOL
    # Normalise each eigenvector by its "1" entry; the real part then holds (x, y, z) at BASIS[6:9].
    one = vectors[..., 9]
    is_real = is_real & (one.abs() > 1e-12 * vectors.abs().amax(-1))
    xyz = (vectors[..., 6:9] / torch.where(one.abs() > 0, one, torch.ones_like(one)).unsqueeze(-1)).real
    coefficients = torch.cat([xyz, torch.ones_like(xyz[..., :1])], dim=-1)  # (M, 10, 4)
    E = (coefficients @ null_basis).unflatten(-1, (3, 3))  # (M, 10, 3, 3)
    norm = E.flatten(-2).norm(dim=-1)
    valid = is_real & (finite & rank_ok & lead_ok)[:, None] & torch.isfinite(norm) & (norm > 0)
    E = E / torch.where(valid, norm, torch.ones_like(norm))[..., None, None]
    E = torch.where(valid[..., None, None], E, torch.zeros_like(E))
    return E.reshape(*batch_shape, MAX_SOLUTIONS, 3, 3), valid.reshape(*batch_shape, MAX_SOLUTIONS)
