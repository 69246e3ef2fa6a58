"""Training the light descriptor head from an existing KeypointNet (--init, --freeze-init, --descriptor-head)."""

from __future__ import annotations

import cv2
import pytest
import torch

from priordepth_core.models import KeypointNet
from priordepth_core.train.checkpoint import load_checkpoint
from priordepth_core.train.keypoints import (
    gather_training_images,
    init_from,
    load_keypoint_net,
    main,
    strip_keypoint_checkpoint,
    train_keypoint_net,
)

torch.set_num_threads(1)
cv2.setNumThreads(1)

OPTIONS = {"size": (64, 96), "batch": 2, "lite": True, "descriptor_dim": 16, "seed": 0, "log_every": 0,
           "progress": False}


def _images():
    _, images = gather_training_images(["camera"], [])
    return [cv2.resize(images[0], (160, 120), interpolation=cv2.INTER_AREA)]


def _kp2d_checkpoint(path) -> dict[str, torch.Tensor]:
    torch.manual_seed(5)
    net = KeypointNet(descriptor_dim=16, lite=True)
    torch.save({"model": net.state_dict(), "config": {"descriptor_dim": 16, "lite": True,
                                                      "upsample_descriptors": True}, "step": 1}, path)
    return net.state_dict()


def test_light_head_trains_alone_from_a_kp2d_net(tmp_path):
    source = _kp2d_checkpoint(tmp_path / "kp2d.pt")
    out = tmp_path / "light.pt"
    train_keypoint_net(out, steps=3, images=_images(), save_every=0, descriptor_head="light",
                       init=tmp_path / "kp2d.pt", freeze_init=True, lr=1e-2, **OPTIONS)
    net, config = load_keypoint_net(out)
    assert config["descriptor_head"] == "light" and config["freeze_init"] and config["init"].endswith("kp2d.pt")
    state = net.state_dict()
    shared = [k for k in state if not k.startswith("light_descriptor.")]
    assert len(shared) == len([k for k in source if not k.startswith("descriptor_")])
    for key in shared:  # encoder, score and location heads (BatchNorm statistics included) untouched
        torch.testing.assert_close(state[key], source[key], rtol=0, atol=0, msg=key)
    fresh = KeypointNet(descriptor_dim=16, lite=True, descriptor_head="light")
    init_from(fresh, tmp_path / "kp2d.pt")
    assert any(not torch.equal(state[k], fresh.state_dict()[k]) for k in state if k.startswith("light_descriptor."))
    # The shipped form: weights (fp16) and config only, read back by the same loader.
    stripped = tmp_path / "stripped.pt"
    assert strip_keypoint_checkpoint(out, stripped) < out.stat().st_size
    assert set(load_checkpoint(stripped)) == {"model", "config", "step"}
    small, small_config = load_keypoint_net(stripped)
    assert small_config == config
    for key, value in small.state_dict().items():
        torch.testing.assert_close(value, state[key].half().to(value.dtype), msg=key)


def test_cli_descriptor_head_options(tmp_path, capsys):
    _kp2d_checkpoint(tmp_path / "kp2d.pt")
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), _images()[0])
    out = tmp_path / "light.pt"
    common = ["--out", str(out), "--steps", "1", "--size", "64x96", "--batch", "1", "--lite", "--descriptor-dim",
              "16", "--images", str(folder), "--no-skimage", "--log-every", "0"]
    assert main([*common, "--descriptor-head", "light", "--init", str(tmp_path / "kp2d.pt"), "--freeze-init"]) == 0
    assert load_checkpoint(out)["config"]["descriptor_head"] == "light"
    assert "initialised" in capsys.readouterr().out
    # Freezing everything a KP2D init covers leaves nothing to train.
    assert main([*common, "--init", str(tmp_path / "kp2d.pt"), "--freeze-init"]) == 2
    assert "frozen" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*common, "--descriptor-head", "tiny"])
