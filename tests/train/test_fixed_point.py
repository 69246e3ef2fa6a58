"""The fixed-point guard: with the pose each source gives for a depth, the true depth must warp better than a flat
one (docs/experiments.md: under PnP with training-resolution keypoints a flat depth scored better)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import default_collate

from priordepth_core.data.match_cache import MatchCacheSettings
from priordepth_core.data.sample import FrameSamples
from priordepth_core.data.suite import SyntheticSuiteReader
from priordepth_core.data.synthetic import SequenceSpec, make_sequence, write_sequence
from priordepth_core.pose import EssentialStatus
from priordepth_core.train.config import ConfigError, load_config
from priordepth_core.train.fixed_point import depth_hypothesis_losses, fixed_point_margin
from priordepth_core.train.model import DepthPoseModel
from priordepth_core.train.objective import SelfSupervisedObjective


@pytest.fixture(scope="module")
def street_batch(tmp_path_factory):
    """Every sample of an 8-frame synthetic street (640x192 rendered, 320x96 samples) with its match cache."""
    root = tmp_path_factory.mktemp("street") / "seq"
    write_sequence(make_sequence(SequenceSpec("street", "car", 8, 640, 192, seed=11)), root, "tum", progress=False)
    samples = FrameSamples(SyntheticSuiteReader(root), (96, 320), (-1, 1),
                           match_settings=MatchCacheSettings(max_offset=2, max_matches=150),
                           cache_dir=str(tmp_path_factory.mktemp("cache")), min_context_parallax_px=2.0)
    return default_collate([samples[i] for i in range(len(samples))])


def _priordepth_step(batch, status=None, gauge=0.01):
    """One forward/backward of the priordepth model on ``batch``: (loss, metrics, DepthNet decoder gradient norm)."""
    torch.manual_seed(0)
    config = load_config(None, ["pose.source=priordepth", "data.match_cache=true", "model.lite=true",
                                "loss.sparse_prior_weight=0.1", "loss.smoothness_weight=0",
                                "loss.min_parallax_deg=0.5", f"loss.depth_gauge_weight={gauge}"])
    model, objective = DepthPoseModel(config), SelfSupervisedObjective(config)
    if status is not None:
        batch = {**batch, "essential_status": torch.full_like(batch["essential_status"], int(status))}
    outputs = model(batch)
    loss, metrics = objective(batch, outputs)
    loss.backward()
    grad = sum(float(p.grad.norm()) for p in model.depth_net.parameters() if p.grad is not None)
    return loss, metrics, outputs, grad


def test_a_priordepth_training_step_trains_the_depth_through_warp_and_prior(street_batch):
    loss, metrics, outputs, grad = _priordepth_step(street_batch)
    assert torch.isfinite(loss) and grad > 0
    assert outputs["pose_valid"].all() and outputs["pose_depth_gradient"].all()
    assert float(metrics["loss/sparse_prior"]) > 0 and float(metrics["sparse_prior/used_points"]) >= 50
    # The gauge: squared distance of each image's mean log depth to log sqrt(min_depth * max_depth) (0.1, 100).
    mean_log = outputs["depth"][0].detach().flatten(1).log().mean(dim=1)
    expected = (mean_log - math.log(math.sqrt(0.1 * 100.0))).pow(2).mean()
    assert float(metrics["loss/depth_gauge"]) == pytest.approx(float(expected), rel=1e-5)
    # The cached essential poses are within a degree of the truth (monitoring metrics of the objective).
    assert float(metrics["pose/rot_err_deg"]) < 0.5 and float(metrics["pose/tdir_err_deg"]) < 5.0


def test_pnp_can_solve_from_the_cached_matches(street_batch):
    config = load_config(None, ["pose.source=pnp", "pose.matches=cache", "data.match_cache=true", "model.lite=true",
                                "loss.sparse_prior_weight=0.1", "pose.min_inliers=8"])
    model = DepthPoseModel(config)
    assert model.keypoint_net is None
    outputs = model(street_batch)
    loss, metrics = SelfSupervisedObjective(config)(street_batch, outputs)
    assert torch.isfinite(loss) and outputs["pose_valid"].any()
    assert "triangulated_depth" not in outputs["matches"][0]  # PnP's prior triangulates with its own pose
    with pytest.raises(ConfigError, match=r"pose\.matches 'cache'"):
        load_config(None, ["pose.source=pnp", "pose.matches=cache"])


def test_rotation_only_pairs_give_the_depth_no_gradient(street_batch):
    _, metrics, outputs, grad = _priordepth_step(street_batch, EssentialStatus.ROTATION_ONLY, gauge=0.0)
    assert not outputs["pose_depth_gradient"].any()
    assert float(metrics["sparse_prior/used_points"]) == 0
    assert grad == 0.0  # smoothness and the gauge are off: nothing else reaches the depth


def test_the_true_depth_beats_a_flat_one_for_the_anchored_and_the_true_pose(street_batch):
    losses = depth_hypothesis_losses(street_batch, sources=("posenet", "priordepth", "pnp"))
    # Measured on this sequence: margins 2-3 (flat depth's error 3-4x the true depth's). A source whose pose followed
    # the depth would give ~0.
    assert fixed_point_margin(losses["posenet"]) > 0.5
    assert fixed_point_margin(losses["priordepth"]) > 0.5
    # With the anchored pose the true depth warps almost as well as with the true pose.
    assert losses["priordepth"]["true"] < 1.3 * losses["posenet"]["true"]
    assert all(torch.isfinite(torch.tensor(v["true"])) for v in losses.values())


def test_the_check_names_what_the_batch_lacks(street_batch):
    batch = {key: value for key, value in street_batch.items() if key != "essential_status"}
    with pytest.raises(ValueError, match="essential_status"):
        depth_hypothesis_losses(batch)


def test_priordepth_needs_the_match_cache_in_the_config():
    with pytest.raises(ConfigError, match=r"data\.match_cache: true"):
        load_config(None, ["pose.source=priordepth"])
    with pytest.raises(ConfigError, match=r"data\.match_cache: true"):
        load_config(None, ["data.min_context_parallax_px=2"])
    config = load_config(None, ["pose.source=priordepth", "data.match_cache=true"])
    assert config.pose.source == "priordepth"
