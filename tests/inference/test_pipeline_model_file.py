"""The packaged inference model: the shipped default, packing from PoseNet and joint (PnP) trainer checkpoints, and
the errors of unusable inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from priordepth_core.inference import SHIPPED_MODELS, default_checkpoint_path, load_inference_model, model_path
from priordepth_core.inference.model_file import INFERENCE_MODEL_FORMAT, MAX_PACKAGED_BYTES
from priordepth_core.inference.pack import main as pack_main
from priordepth_core.models import KeypointNet

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_pipeline_shipped_model_is_small_safe_and_documented():
    path = default_checkpoint_path()
    assert path.is_file(), "the default model must ship in priordepth_core/assets/"
    assert path.stat().st_size <= MAX_PACKAGED_BYTES
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["format"] == INFERENCE_MODEL_FORMAT
    floats = [v for part in ("depth_net", "keypoint_net") for v in state[part].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    provenance = state["provenance"]
    for key in ("pose_source", "source_checkpoint", "keypoint_source", "packaged_from_sha256"):
        assert provenance.get(key), key
    assert provenance["metrics"]["metrics"]["abs_rel"] < 0.3  # the recorded evaluation of the packaged run
    model = load_inference_model(path)
    assert model.input_size == (96, 320)
    assert model.depth_config["lite"] and model.keypoint_config["lite"]
    # The fp16 weights load into float32 networks that give depth inside the configured range.
    image = torch.rand(1, 3, 96, 320, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        depth = model.depth_net(image)["depth"][0]
    assert torch.isfinite(depth).all()
    assert model.depth_config["min_depth"] <= depth.min() <= depth.max() <= model.depth_config["max_depth"]


def _joint_trainer_checkpoint(path, source: str):
    """A trainer-format checkpoint (model state dict + config) of an untrained DepthPoseModel."""
    from priordepth_core.train.config import load_config
    from priordepth_core.train.model import DepthPoseModel

    config = load_config(overrides=["model.lite=true", "model.keypoint_lite=true", "model.descriptor_dim=32",
                                    f"pose.source={source}", "data.height=64", "data.width=96"])
    torch.manual_seed(0)
    model = DepthPoseModel(config)
    torch.save({"model": model.state_dict(), "config": config.to_dict(), "step": 7, "epoch": 1,
                "history": json.dumps([{"abs_rel": 0.5}])}, path)
    return model


def test_pipeline_pack_joint_checkpoint_takes_its_keypoint_net(tmp_path, capsys):
    source = tmp_path / "pnp.pt"
    trained = _joint_trainer_checkpoint(source, "pnp")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"abs_rel": 0.123}))
    out = tmp_path / "packed.pt"
    assert pack_main(["--checkpoint", str(source), "--out", str(out), "--metrics", str(metrics),
                      "--note", "test run"]) == 0
    assert "pose source pnp" in capsys.readouterr().out
    model = load_inference_model(out)
    assert model.keypoint_config == {"descriptor_dim": 32, "lite": True, "upsample_descriptors": True}
    assert model.input_size == (64, 96)
    assert model.provenance["pose_source"] == "pnp" and model.provenance["step"] == 7
    assert "joint" in model.provenance["keypoint_source"]
    assert model.provenance["metrics"] == {"abs_rel": 0.123} and model.provenance["note"] == "test run"
    assert model.provenance["last_evaluation"] == {"abs_rel": 0.5}
    # Weights round-trip through fp16.
    for name, value in trained.keypoint_net.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(model.keypoint_net.state_dict()[name], value.half().float()), name
    # The coarser DepthNet heads are dropped; the finest one is kept exactly (up to fp16).
    packed_depth = model.depth_net.state_dict()
    assert not any(k.startswith("decoder.dispconv.1") for k in packed_depth)
    assert torch.allclose(packed_depth["decoder.dispconv.0.conv.weight"],
                          trained.depth_net.state_dict()["decoder.dispconv.0.conv.weight"].half().float())


def test_pipeline_pack_posenet_checkpoint_needs_keypoints(tmp_path, capsys):
    source = tmp_path / "posenet.pt"
    _joint_trainer_checkpoint(source, "posenet")
    out = tmp_path / "packed.pt"
    assert pack_main(["--checkpoint", str(source), "--out", str(out)]) == 1
    assert "holds no KeypointNet" in capsys.readouterr().err
    assert not out.exists()
    # With a KeypointNet checkpoint (train.keypoints format) it packs.
    keypoints = tmp_path / "kp.pt"
    torch.save({"model": KeypointNet(descriptor_dim=24, lite=True).state_dict(),
                "config": {"descriptor_dim": 24, "lite": True, "upsample_descriptors": True}, "step": 3}, keypoints)
    assert pack_main(["--checkpoint", str(source), "--keypoints", str(keypoints), "--out", str(out)]) == 0
    model = load_inference_model(out)
    assert model.keypoint_config["descriptor_dim"] == 24
    assert model.provenance["keypoint_source"] == str(keypoints)
    assert len(model.provenance["keypoint_source_sha256"]) == 64


def test_pipeline_pack_rejects_bad_inputs(tmp_path, capsys):
    out = tmp_path / "packed.pt"
    assert pack_main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err
    source = tmp_path / "pnp.pt"
    _joint_trainer_checkpoint(source, "pnp")
    bad_metrics = tmp_path / "metrics.json"
    bad_metrics.write_text("{not json")
    assert pack_main(["--checkpoint", str(source), "--metrics", str(bad_metrics), "--out", str(out)]) == 1
    assert "not JSON" in capsys.readouterr().err
    wrong = tmp_path / "wrong_kp.pt"
    torch.save({"model": {"conv.weight": torch.zeros(1)}, "config": {"descriptor_dim": 8, "lite": True}}, wrong)
    assert pack_main(["--checkpoint", str(source), "--keypoints", str(wrong), "--out", str(out)]) == 1
    assert "do not fit" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".packed.pt*"))
    with pytest.raises(ValueError, match="over the 15 MiB limit"):
        from priordepth_core.inference import save_inference_model, untrained_inference_model

        big = untrained_inference_model((64, 96))
        big.depth_net.register_buffer("padding", torch.zeros(8 * 2**20))  # 16 MiB more in fp16
        save_inference_model(big, out)
    assert not out.exists()


@pytest.mark.parametrize("command", ["pack", "export", "infer"])
def test_model_commands_explain_a_file_that_is_not_a_model(tum_plane_sequence, tmp_path, command):
    """Random bytes or a truncated packed model: exit 1, what is wrong and what is expected, no torch advice."""
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.pt"
    shipped = default_checkpoint_path().read_bytes()
    truncated.write_bytes(shipped[: len(shipped) // 2])
    arguments = {"pack": ["--out", str(tmp_path / "out.pt")],
                 "export": ["--format", "onnx", "--out", str(tmp_path / "out.onnx")],
                 "infer": ["--input", str(tum_plane_sequence), "--out", str(tmp_path / "out"), "--no-progress"]}
    module = {"pack": "priordepth_core.inference.pack", "export": "priordepth_core.export",
              "infer": "priordepth_core.infer"}[command]
    for path, message in ((random_bytes, "is not a PriorDepth checkpoint or model: it is not a file written by "
                                         "torch.save"), (truncated, "is truncated or damaged")):
        result = subprocess.run([sys.executable, "-m", module, "--checkpoint", str(path), *arguments[command]],
                                cwd=REPO_ROOT, capture_output=True, text=True)
        assert result.returncode == 1, result.stderr[-2000:]
        assert message in result.stderr and "expected a packed inference model" in result.stderr
        assert "Traceback" not in result.stderr and "weights_only=False" not in result.stderr
        assert not list(tmp_path.glob("out*"))


def test_keypoint_checkpoint_is_not_a_depth_model(tmp_path):
    keypoints = tmp_path / "kp.pt"
    torch.save({"model": KeypointNet(descriptor_dim=24, lite=True).state_dict(),
                "config": {"descriptor_dim": 24, "lite": True}, "step": 3}, keypoints)
    with pytest.raises(ValueError, match="is a KeypointNet checkpoint and holds no DepthNet; expected a packed"):
        load_inference_model(keypoints)


def test_shipped_models_by_name():
    assert model_path("driving") == default_checkpoint_path() == model_path("") == model_path(None)
    assert model_path("runs/x/model.pt") == Path("runs/x/model.pt")
    if not (default_checkpoint_path().parent / SHIPPED_MODELS["indoor"]).is_file():
        with pytest.raises(FileNotFoundError, match=r"no 'indoor' model is shipped in this version.*shipped: driving"):
            model_path("indoor")
    else:  # the PriorDepth-trained handheld model (docs/experiments.md), at the handheld training size
        indoor = load_inference_model(model_path("indoor"))
        assert indoor.provenance["pose_source"] == "priordepth" and tuple(indoor.input_size) == (128, 160)
    # Both shipped models are PriorDepth-trained (essential-anchored pose, docs/experiments.md).
    assert load_inference_model(model_path("driving")).provenance["pose_source"] == "priordepth"
