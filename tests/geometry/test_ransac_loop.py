"""The shared batched RANSAC loop (:func:`priordepth_core.geometry.pose.ransac.run_ransac`) on a toy model: 1D
offsets, one point per minimal set."""

import torch

from priordepth_core.geometry.pose.ransac import run_ransac


class _Offset:
    """Model: a scalar offset c; residual of point v is v - c; one point per minimal set, every other set invalid
    when ``masked``."""

    sample_size = 1

    def __init__(self, values, masked=False):
        self.values, self.masked = values, masked

    def hypotheses(self, rows, index):
        c = torch.gather(self.values[rows], 1, index[..., 0])  # (A, count)
        ok = None
        if self.masked:
            ok = (torch.arange(c.shape[1]) % 2 == 0).expand_as(c)
        return (c,), ok

    def residuals_sq(self, models, rows):
        return (self.values[rows][:, None, :] - models[0][..., None]).square()


def _problems(B=3, N=50, inlier_ratio=0.6, seed=0):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(B, 1, generator=g, dtype=torch.float64) * 10
    values = truth + 0.01 * torch.randn(B, N, generator=g, dtype=torch.float64)
    outliers = torch.rand(B, N, generator=g) > inlier_ratio
    values = torch.where(outliers, 100 + 50 * torch.rand(B, N, generator=g, dtype=torch.float64), values)
    return values, truth[:, 0]


def _run(values, **kwargs):
    options = dict(num_hypotheses=64, per_round=8, candidates=3, threshold=0.1, confidence=0.999,
                   generator=torch.Generator().manual_seed(1))
    options.update(kwargs)
    model = options.pop("model", _Offset(values))
    return run_ransac(model, torch.ones_like(values), torch.ones_like(values, dtype=torch.bool), **options)


def test_finds_the_offset_and_stops_early():
    values, truth = _problems()
    result = _run(values)
    assert torch.allclose(result.models[0][:, 0], truth, atol=0.05)
    assert result.models[0].shape == (3, 3) and result.cost.shape == (3, 3) and result.cost.dtype == torch.float64
    assert bool((result.cost[:, :-1] <= result.cost[:, 1:]).all())  # best first
    assert bool((result.drawn < 64).all()) and result.rounds == int(result.drawn.max()) // 8


def test_all_outliers_draw_every_hypothesis():
    values = torch.arange(40, dtype=torch.float64).expand(2, 40).clone()  # spacing 1 >> threshold: ratio 1/40
    result = _run(values, num_hypotheses=20)
    assert result.drawn.tolist() == [20, 20] and result.rounds == 3  # 8 + 8 + 4


def test_per_problem_stop_lets_finished_problems_drop_out():
    easy, _ = _problems(B=1, inlier_ratio=1.1)
    hard = torch.arange(50, dtype=torch.float64)[None]
    result = _run(torch.cat([easy, hard]), per_problem_stop=True)
    assert result.drawn.tolist() == [8, 64]
    together = _run(torch.cat([easy, hard]), per_problem_stop=False)
    assert together.drawn.tolist() == [64, 64]


def test_seeds_initial_candidates_and_validity_mask():
    values, _ = _problems(B=2)
    inlier = values < 50
    mean = (values * inlier).sum(-1) / inlier.sum(-1)  # the lowest MSAC cost of all offsets
    result = _run(values, seeds=(mean[:, None],), num_hypotheses=8)
    assert result.ids[:, 0].tolist() == [-1, -1] and torch.equal(result.models[0][:, 0], mean)
    initial = ((torch.zeros(2, 3, dtype=torch.float64),), torch.full((2, 3), float("inf"), dtype=torch.float64))
    masked = _run(values, model=_Offset(values, masked=True), initial=initial)
    assert bool(torch.isfinite(masked.cost[:, 0]).all())
    assert bool((masked.ids[torch.isfinite(masked.cost)] % 2 == 0).all())  # masked hypotheses never win


def test_local_optimisation_hook_sees_the_result():
    values, truth = _problems()
    result = _run(values, local_optimise=lambda r: r.models[0][:, 0] * 2)
    assert torch.allclose(result.local, 2 * result.models[0][:, 0])
    assert torch.allclose(result.local / 2, truth, atol=0.05)


def test_seeded_generator_is_reproducible():
    values, _ = _problems()
    a, b = _run(values), _run(values)
    assert torch.equal(a.models[0], b.models[0]) and torch.equal(a.drawn, b.drawn)
