"""One training step per pose source: finite loss, finite gradients that reach DepthNet and KeypointNet."""

import pytest
import torch
from torch.utils.data import default_collate

from priordepth_core.data import TumRgbdDataset
from priordepth_core.train.config import load_config
from priordepth_core.train.model import DepthPoseModel
from priordepth_core.train.objective import SelfSupervisedObjective


def _config(source: str, **extra):
    overrides = [f"pose.source={source}", "model.lite=true", "model.keypoint_lite=true", "model.descriptor_dim=32",
                 "data.height=64", "data.width=96", "loss.keypoint_weight=1.0", "loss.sparse_prior_weight=1.0",
                 "pose.top_k=64", "pose.ransac_hypotheses=32", "pose.min_inliers=8", "model.max_depth=20.0"]
    return load_config(overrides=overrides + [f"{k}={v}" for k, v in extra.items()])


def _batch(plane_sequence, indices=(2, 5)):
    dataset = TumRgbdDataset(plane_sequence, (64, 96), (-1, 1))
    return default_collate([dataset[i] for i in indices])


def _grad_norms(module):
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads if g is not None)
    finite = all(torch.isfinite(g).all() for g in grads if g is not None)
    total = sum(float(g.abs().sum()) for g in grads if g is not None)
    return finite, total


@pytest.mark.parametrize("source", ["posenet", "essential", "pnp"])
def test_one_step_has_finite_gradients(plane_sequence, source):
    torch.manual_seed(0)
    config = _config(source)
    model, objective = DepthPoseModel(config), SelfSupervisedObjective(config)
    batch = _batch(plane_sequence)
    outputs = model(batch, step=0)
    loss, metrics = objective(batch, outputs)
    assert torch.isfinite(loss)
    assert outputs["T_context_target"].shape == (2, 2, 4, 4)
    assert torch.isfinite(outputs["T_context_target"]).all()
    loss.backward()
    for name in ("depth_net", "keypoint_net"):
        finite, total = _grad_norms(getattr(model, name))
        assert finite, f"non-finite gradient in {name}"
        assert total > 0, f"no gradient reached {name}"
    if source == "posenet":
        assert _grad_norms(model.pose_net)[1] > 0


@pytest.mark.parametrize("source", ["essential", "pnp"])
def test_degenerate_pairs_stay_finite(plane_sequence, source):
    """Pure rotation (context == target: no motion at all) and fewer than 8 matches must not produce NaN."""
    torch.manual_seed(0)
    config = _config(source, **{"pose.top_k": 6})
    model, objective = DepthPoseModel(config), SelfSupervisedObjective(config)
    batch = _batch(plane_sequence)
    batch["context"] = batch["image"][:, None].repeat(1, 2, 1, 1, 1)  # zero motion
    outputs = model(batch, step=0)
    assert not outputs["pose_valid"].any()  # < min_inliers matches: every pair is flagged
    assert torch.equal(outputs["T_context_target"], torch.eye(4).expand(2, 2, 4, 4))
    loss, _ = objective(batch, outputs)
    assert torch.isfinite(loss)
    loss.backward()
    for name in ("depth_net", "keypoint_net"):
        assert _grad_norms(getattr(model, name))[0]


def test_warmup_switches_pose_source():
    config = _config("pnp", **{"pose.warmup_source": "essential", "pose.warmup_steps": 10})
    model = DepthPoseModel(config)
    assert model.active_pose_source(0) == "essential" and model.active_pose_source(10) == "pnp"
    assert model.pose_net is None
