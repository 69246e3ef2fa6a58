"""One training step per pose source: finite loss, finite gradients that reach DepthNet and KeypointNet."""

import pytest
import torch
from torch.utils.data import default_collate

from priordepth_core.data import FrameSamples, TumRgbdReader
from priordepth_core.pose import PoseProblem
from priordepth_core.train.config import load_config
from priordepth_core.train.model import DepthPoseModel
from priordepth_core.train.objective import SelfSupervisedObjective


def _config(source: str, **extra):
    overrides = [f"pose.source={source}", "model.lite=true", "model.keypoint_lite=true", "model.descriptor_dim=32",
                 "data.height=64", "data.width=96", "loss.keypoint_weight=1.0", "loss.sparse_prior_weight=1.0",
                 "pose.top_k=64", "pose.ransac_hypotheses=32", "pose.min_inliers=8", "model.max_depth=20.0"]
    return load_config(overrides=overrides + [f"{k}={v}" for k, v in extra.items()])


def _batch(plane_sequence, indices=(2, 5)):
    dataset = FrameSamples(TumRgbdReader(plane_sequence), (64, 96), (-1, 1))
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


@pytest.mark.parametrize("source", ["essential", "pnp"])
def test_pure_rotation_pair_stays_finite(plane_sequence, source):
    """A context that is the target seen after a pure camera rotation (an exact homography K R K^-1 warp)."""
    from priordepth_core.geometry.se3 import so3_exp
    from priordepth_core.losses.keypoint import warp_image_homography

    torch.manual_seed(0)
    config = _config(source, **{"pose.top_k": 64})
    model, objective = DepthPoseModel(config), SelfSupervisedObjective(config)
    batch = _batch(plane_sequence)
    K = batch["K"]
    R = so3_exp(torch.tensor([[0.0, 0.03, 0.01], [0.02, -0.02, 0.0]]))  # ~2 degrees
    H_context_target = K @ R @ torch.linalg.inv(K)
    rotated, _ = warp_image_homography(batch["image"], H_context_target)
    batch["context"] = torch.stack([rotated, rotated], dim=1)
    outputs = model(batch, step=0)
    T = outputs["T_context_target"]
    assert torch.isfinite(T).all()
    if source == "essential":
        pure = torch.stack([m["pure_rotation"] for m in outputs["matches"]], dim=1)
        valid = outputs["pose_valid"]
        # A solved pair is either recognised as a pure rotation (t = 0) or flagged invalid, never a wrong motion.
        assert torch.equal(T[..., :3, 3][valid & pure], torch.zeros_like(T[..., :3, 3][valid & pure]))
        assert not (valid & ~pure).any()
    loss, _ = objective(batch, outputs)
    assert torch.isfinite(loss)
    loss.backward()
    for name in ("depth_net", "keypoint_net"):
        assert _grad_norms(getattr(model, name))[0]


def test_pure_rotation_correspondences_give_rotation_only_pose():
    """The essential pose source on exact pure-rotation matches: detected, t = 0, accurate R, finite gradients."""
    from priordepth_core.geometry.camera import project_points, unproject_points
    from priordepth_core.geometry.se3 import rotation_error_deg, so3_exp

    torch.manual_seed(0)
    model = DepthPoseModel(_config("essential"))
    B, N = 2, 120
    K = torch.tensor([[80.0, 0, 47.5], [0, 80.0, 31.5], [0, 0, 1]]).expand(B, 3, 3)
    x_target = torch.rand(B, N, 2) * torch.tensor([95.0, 63.0])
    rays = unproject_points(x_target, torch.ones(B, N), K)
    R = so3_exp(torch.tensor([[0.0, 0.03, 0.01], [0.02, -0.02, 0.0]]))
    x_context, _, _ = project_points(rays @ R.transpose(1, 2), K)
    weights = torch.ones(B, N, requires_grad=True)
    depth = torch.full((B, 1, 64, 96), 4.0, requires_grad=True)
    solved = model.pose_schedule.at(0).solve(PoseProblem(K=K, x_target=x_target, x_context=x_context,
                                                         weights=weights, depth_target=depth))
    assert solved.pure_rotation.all() and solved.supported.all()
    T = solved.supported_pose()
    assert torch.equal(T[:, :3, 3], torch.zeros(B, 3))
    assert rotation_error_deg(T[:, :3, :3], R).max() < 0.05
    T.sum().backward()
    assert torch.isfinite(weights.grad).all()


def test_posenet_fallback_replaces_failed_pairs(plane_sequence):
    """With pose.fallback=posenet a failed PnP pair is warped with the PoseNet pose instead of being masked."""
    torch.manual_seed(0)
    config = _config("pnp", **{"pose.top_k": 6, "pose.fallback": "posenet"})  # < min_inliers: every solve fails
    model, objective = DepthPoseModel(config), SelfSupervisedObjective(config)
    batch = _batch(plane_sequence)
    outputs = model(batch, step=0)
    assert not outputs["pose_valid"].any() and outputs["pose_fallback"].all()
    posenet_T = model.pose_net.T_context_target(batch["image"], batch["context"][:, 0], -1)
    torch.testing.assert_close(outputs["T_context_target"][:, 0], posenet_T)
    loss, metrics = objective(batch, outputs)
    assert float(metrics["pose/fallback_fraction"]) == 1.0
    loss.backward()
    assert _grad_norms(model.pose_net)[1] > 0  # the photometric term of fallback pairs trains the PoseNet


def test_each_pair_matches_its_own_context(plane_sequence):
    """Keypoints of context s of sample b are those of that image (a batch-major/context-major mix-up pairs a target
    with another sample's context)."""
    torch.manual_seed(0)
    config = _config("pnp")
    model = DepthPoseModel(config).eval()
    batch = _batch(plane_sequence, indices=(2, 5, 8))
    with torch.no_grad():
        outputs = model(batch, step=0)
        B, S = batch["context"].shape[:2]
        for s in range(S):
            alone = model.keypoint_net(batch["context"][:, s])
            in_batch = {key: value[B * (1 + s): B * (2 + s)] for key, value in outputs["keypoint_dense"].items()}
            torch.testing.assert_close(in_batch["score"], alone["score"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("source", ["essential", "pnp"])
def test_photometric_loss_alone_reaches_keypoint_scores(plane_sequence, source):
    """With no keypoint or prior loss, the KeypointNet still learns: its scores weight the differentiable solve."""
    torch.manual_seed(0)
    config = _config(source, **{"loss.keypoint_weight": 0.0, "loss.sparse_prior_weight": 0.0, "pose.min_inliers": 0})
    model, objective = DepthPoseModel(config), SelfSupervisedObjective(config)
    batch = _batch(plane_sequence)
    # Contexts shifted by one keypoint cell (8 px): even an untrained KeypointNet matches them (its convolutions are
    # shift-equivariant on the cell grid), so the solves succeed and the photometric loss depends on the weights.
    image = batch["image"]
    batch["context"] = torch.stack([image.roll(8, dims=-1), image.roll(-8, dims=-1)], dim=1)
    outputs = model(batch, step=0)
    assert outputs["pose_valid"].any()
    loss, _ = objective(batch, outputs)
    loss.backward()
    finite, total = _grad_norms(model.keypoint_net)
    assert finite and total > 0


@pytest.mark.parametrize("detach", [False, True])
def test_pnp_detach_depth_cuts_the_gradient_through_the_pose(plane_sequence, detach):
    """pose.detach_depth: the solved pose still carries the depth's values, but no gradient flows from it into the
    DepthNet (without it, the pose is a differentiable function of the depth)."""
    torch.manual_seed(0)
    config = _config("pnp", **{"pose.detach_depth": detach, "pose.min_inliers": 0})
    model = DepthPoseModel(config)
    batch = _batch(plane_sequence)
    image = batch["image"]  # contexts shifted by one keypoint cell: an untrained KeypointNet matches them
    batch["context"] = torch.stack([image.roll(8, dims=-1), image.roll(-8, dims=-1)], dim=1)
    outputs = model(batch, step=0)
    assert outputs["pose_valid"].any()
    outputs["T_context_target"][..., :3, 3].abs().sum().backward()
    _, depth_grad = _grad_norms(model.depth_net)
    if detach:
        assert depth_grad == 0
    else:
        assert depth_grad > 0


def test_frozen_keypoint_net_stays_at_its_checkpoint(plane_sequence, tmp_path):
    """model.keypoint_frozen: a full PnP step leaves the KeypointNet's weights and BatchNorm statistics untouched while
    the DepthNet still learns."""
    from priordepth_core.models import KeypointNet
    from priordepth_core.train.checkpoint import save_atomic

    torch.manual_seed(0)
    init = KeypointNet(descriptor_dim=32, lite=True)
    path = tmp_path / "keypoints.pt"
    save_atomic({"model": init.state_dict(), "config": {"descriptor_dim": 32, "lite": True}}, path)
    config = _config("pnp", **{"model.keypoint_init": str(path), "model.keypoint_frozen": "true",
                               "loss.keypoint_weight": 0.0, "pose.min_inliers": 0})
    model, objective = DepthPoseModel(config), SelfSupervisedObjective(config)
    model.train()
    assert not model.keypoint_net.training
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = _batch(plane_sequence)
    image = batch["image"]
    batch["context"] = torch.stack([image.roll(8, dims=-1), image.roll(-8, dims=-1)], dim=1)
    depth_before = [p.detach().clone() for p in model.depth_net.parameters()]
    loss, _ = objective(batch, model(batch, step=0))
    loss.backward()
    optimizer.step()
    for name, value in model.keypoint_net.state_dict().items():
        torch.testing.assert_close(value, init.state_dict()[name], msg=f"{name} changed")
    assert any(not torch.equal(a, b) for a, b in zip(depth_before, model.depth_net.parameters()))


def test_frozen_keypoint_net_needs_an_init_and_no_keypoint_loss():
    from priordepth_core.train.config import ConfigError

    with pytest.raises(ConfigError, match="keypoint_frozen"):
        _config("pnp", **{"model.keypoint_frozen": "true", "loss.keypoint_weight": 0.0})
    with pytest.raises(ConfigError, match="keypoint_frozen"):
        _config("pnp", **{"model.keypoint_frozen": "true", "model.keypoint_init": "k.pt"})
