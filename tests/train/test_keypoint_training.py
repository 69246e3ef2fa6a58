import cv2
import numpy as np
import pytest
import torch

from priordepth_core.losses.keypoint import KeypointLoss, homography_warp_fn
from priordepth_core.train.checkpoint import load_checkpoint
from priordepth_core.train.keypoints import (
    HELD_OUT_IMAGES,
    TRAINING_IMAGES,
    HomographyPairSampler,
    build_keypoint_net,
    gather_training_images,
    learning_rate,
    load_image_folder,
    load_keypoint_net,
    main,
    train_keypoint_net,
)

torch.set_num_threads(1)
cv2.setNumThreads(1)

SIZE = (64, 96)
OPTIONS = {"size": SIZE, "batch": 2, "lite": True, "descriptor_dim": 16, "seed": 0, "log_every": 0,
           "progress": False}


def _images() -> list[np.ndarray]:
    """Two small real photos (scikit-image camera and astronaut), downsized to keep the test fast."""
    _, images = gather_training_images(["camera", "astronaut"], [])
    return [cv2.resize(image, (160, 120), interpolation=cv2.INTER_AREA) for image in images]


def _held_batch_metrics(net, images) -> dict[str, float]:
    """KeypointLoss metrics of a network on one fixed batch of 8 pairs, with batch statistics in BatchNorm (the
    initial running statistics are placeholders, so eval mode would not compare like with like)."""
    sampler = HomographyPairSampler(images, SIZE, torch.Generator().manual_seed(123))
    source, target, H = sampler.sample(8)
    with torch.no_grad():
        _, metrics = KeypointLoss()(net.train()(source), net(target), homography_warp_fn(H, SIZE))
    return {key.split("/")[1]: float(value) for key, value in metrics.items()}


def test_training_reduces_the_loss_on_a_held_batch(tmp_path):
    images = _images()
    out = tmp_path / "kp.pt"
    result = train_keypoint_net(out, steps=30, images=images, save_every=0, **OPTIONS)
    assert result["step"] == 30
    torch.manual_seed(OPTIONS["seed"])  # the initial weights of the run
    initial = build_keypoint_net({"descriptor_dim": 16, "lite": True})
    trained, config = load_keypoint_net(out)
    before, after = _held_batch_metrics(initial, images), _held_batch_metrics(trained, images)
    # Measured: loss 4.78 -> 3.41, descriptor recall 0.05 -> 0.19.
    assert after["loss"] < 0.85 * before["loss"], (before, after)
    assert after["descriptor_recall"] > 2 * before["descriptor_recall"], (before, after)
    assert config["descriptor_dim"] == 16 and config["lite"] is True and config["size"] == list(SIZE)


def test_interrupted_run_resumes_bit_for_bit(tmp_path, monkeypatch):
    images = _images()
    straight, split = tmp_path / "straight.pt", tmp_path / "split.pt"
    train_keypoint_net(straight, steps=4, images=images, save_every=0, **OPTIONS)

    original_sample, calls = HomographyPairSampler.sample, []

    def interrupted_sample(self, batch):
        calls.append(batch)
        if len(calls) == 4:  # steps 1-3 ran; the last checkpoint on disk is step 2's
            raise KeyboardInterrupt
        return original_sample(self, batch)

    monkeypatch.setattr(HomographyPairSampler, "sample", interrupted_sample)
    with pytest.raises(KeyboardInterrupt):
        train_keypoint_net(split, steps=4, images=images, save_every=2, **OPTIONS)
    monkeypatch.setattr(HomographyPairSampler, "sample", original_sample)
    assert load_checkpoint(split)["step"] == 2
    assert not list(tmp_path.glob(".*.tmp"))  # no partial file left behind

    train_keypoint_net(split, steps=4, images=images, save_every=0, resume=True, **OPTIONS)
    a, b = load_checkpoint(straight), load_checkpoint(split)
    assert b["step"] == 4
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)


def test_sampler_batches_are_valid_warps():
    sampler = HomographyPairSampler(_images(), SIZE, torch.Generator().manual_seed(0))
    source, target, H = sampler.sample(3)
    assert source.shape == target.shape == (3, 3, *SIZE) and H.shape == (3, 3, 3)
    assert 0 <= float(source.min()) and float(source.max()) <= 1 and 0 <= float(target.min())
    assert float(target.max()) <= 1
    # The warped copy is a different image of the same content: not identical, not unrelated.
    assert float((source - target).abs().mean()) > 0.01


def test_learning_rate_schedule():
    assert learning_rate(0, 100, 1e-3) == pytest.approx(1e-3)
    assert learning_rate(100, 100, 1e-3) == pytest.approx(1e-4)
    assert learning_rate(50, 100, 1e-3) == pytest.approx(5.5e-4)


def test_training_images_exclude_held_out_and_refuse_graf(tmp_path):
    assert not set(TRAINING_IMAGES) & set(HELD_OUT_IMAGES)
    with pytest.raises(ValueError, match="held out"):
        gather_training_images(["coffee"], [])
    graf = tmp_path / "homography_graf"
    graf.mkdir()
    cv2.imwrite(str(graf / "a.png"), np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="graf"):
        load_image_folder(graf)
    other = tmp_path / "other"
    other.mkdir()
    cv2.imwrite(str(other / "graf1.png"), np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="graf"):
        load_image_folder(other)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_image_folder(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image"):
        load_image_folder(empty)


def test_cli_trains_from_a_folder_and_rejects_bad_options(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(_images()):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out = tmp_path / "run" / "kp.pt"
    args = ["--out", str(out), "--steps", "1", "--size", "64x96", "--batch", "1", "--lite", "--descriptor-dim", "8",
            "--no-skimage", "--images", str(folder)]
    assert main(args) == 0
    net, config = load_keypoint_net(out)
    assert config["images"] == [str(folder / "0.png"), str(folder / "1.png")] and net.descriptor_dim == 8
    assert main(["--out", str(out), "--steps", "2", "--resume", "--descriptor-dim", "16"]) == 2
    assert "descriptor_dim=16" in capsys.readouterr().err
    assert main(["--out", str(out), "--steps", "2", "--resume"]) == 0
    assert load_checkpoint(out)["step"] == 2

    missing = tmp_path / "missing.pt"
    assert main(["--out", str(missing), "--steps", "1", "--resume"]) == 2
    assert not missing.exists()
    with pytest.raises(SystemExit):
        main(["--out", str(missing), "--steps", "1", "--size", "65x96"])
    assert "multiples of 8" in capsys.readouterr().err
    with pytest.raises(ValueError, match="steps"):
        train_keypoint_net(missing, steps=0, images=_images())
    assert not missing.exists() and not list(tmp_path.glob(".missing.pt.*"))
