"""TUM RGB-D reader: associate.py-equivalent matching, jittered stamps, intrinsics sources, depth, bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import TUM_HW, check_common_sample, frame_color, mean_color, truncate, write_rgb, write_tum

from priordepth_core.data import DatasetError, FrameSamples, TumRgbdReader
from priordepth_core.data.tum_rgbd import associate


def tum_associate_reference(first: list[float], second: list[float], max_difference: float) -> list[tuple]:
    """TUM's associate.py (offset 0), verbatim in logic: all candidate pairs, sorted, taken greedily."""
    first_keys, second_keys = list(first), list(second)
    potential = sorted((abs(a - b), a, b) for a in first_keys for b in second_keys if abs(a - b) < max_difference)
    matches = []
    for _, a, b in potential:
        if a in first_keys and b in second_keys:
            first_keys.remove(a)
            second_keys.remove(b)
            matches.append((a, b))
    return sorted(matches)


def test_associate_matches_tum_reference_on_random_stamps():
    rng = np.random.default_rng(0)
    for _ in range(20):
        first = np.unique(np.round(rng.uniform(0, 3, 60), 4))
        second = np.unique(np.round(rng.uniform(0, 3, 90), 4))
        pairs = associate(first, second, 0.02)
        assert [(first[i], second[j]) for i, j in pairs] == tum_associate_reference(list(first), list(second), 0.02)
    # Greedy by smallest difference: b = 0.015 is closer to a = 0.01 than to a = 0.0, so 0.0 pairs with nothing.
    assert associate(np.array([0.0, 0.01]), np.array([0.015]), 0.02) == [(1, 0)]


@pytest.fixture
def jittered_sequence(tmp_path):
    rng = np.random.default_rng(1)
    rgb = 1305031102.0 + np.arange(8) / 30.0 + rng.uniform(-0.003, 0.003, 8)
    depth = rgb + rng.uniform(-0.008, 0.008, 8)
    depth[5] = rgb[5] + 0.025  # too far: rgb frame 5 gets no depth and is dropped
    gt = 1305031101.99 + np.arange(30) / 100.0 + rng.uniform(-0.001, 0.001, 30)
    folder = tmp_path / "rgbd_dataset_freiburg1_xyz"
    poses = write_tum(folder, rgb, depth, gt)
    return folder, rgb, depth, gt, poses


def test_association_drops_unmatched_frames_and_poses_are_nearest(jittered_sequence):
    folder, rgb, depth, gt, poses = jittered_sequence
    dataset = FrameSamples(TumRgbdReader(folder), size_hw=(12, 16))
    kept_rgb = [0, 1, 2, 3, 4, 6, 7]
    assert [f.stamp for f in dataset.reader.sequences[0]] == pytest.approx(list(rgb[kept_rgb]), abs=1e-6)
    assert len(dataset) == 5  # 7 associated frames, the first and last lack a neighbour
    sample = dataset[3]  # associated position 4 = rgb frame 4; its +1 context is rgb frame 6 (5 was dropped)
    check_common_sample(sample, (12, 16), 2, depth_hw=(12, 16), has_poses=True)
    assert sample["frame_index"] == 4 and sample["sequence"] == "rgbd_dataset_freiburg1_xyz"
    assert sample["stamp"] == pytest.approx(rgb[4], abs=1e-6)
    np.testing.assert_allclose(mean_color(sample["image"]), frame_color(4), atol=0.01)
    np.testing.assert_allclose(mean_color(sample["context"][0]), frame_color(3), atol=0.01)
    np.testing.assert_allclose(mean_color(sample["context"][1]), frame_color(6), atol=0.01)
    assert torch.all(sample["depth_gt"] == 5.0)  # depth file 4 stores 5000 * (1 + 4)
    # Ground truth: the nearest pose in time, not interpolated.
    nearest = {i: int(np.argmin(np.abs(gt - rgb[i]))) for i in (3, 4, 6)}
    np.testing.assert_allclose(sample["T_world_cam"].numpy(), poses[nearest[4]], atol=1e-6)
    for k, i in enumerate((3, 6)):
        expected = np.linalg.inv(poses[nearest[i]]) @ poses[nearest[4]]
        np.testing.assert_allclose(sample["T_context_target"][k].numpy(), expected, atol=1e-5)
    # intrinsics.txt: fx fy cx cy for 32x24, scaled to 16x12.
    torch.testing.assert_close(sample["K"], torch.tensor([[8.0, 0, 7.5], [0, 8.5, 5.5], [0, 0, 1]]))


def test_exact_depth_is_preferred_and_native_resolution(jittered_sequence):
    folder, rgb, *_ = jittered_sequence
    (folder / "depth_exact").mkdir()
    for i, stamp in enumerate(rgb):
        np.save(folder / "depth_exact" / f"{stamp:.6f}.npy", np.full(TUM_HW, 0.5 + i, dtype=np.float32))
    dataset = FrameSamples(TumRgbdReader(folder), (12, 16), depth_at_native_resolution=True)
    assert len(dataset) == 6  # no depth.txt association any more: only ground truth filters (all 8 match)
    sample = dataset[4]
    check_common_sample(sample, (12, 16), 2, depth_hw=TUM_HW, has_poses=True)
    assert sample["frame_index"] == 5 and torch.all(sample["depth_gt"] == 5.5)
    without = FrameSamples(TumRgbdReader(folder, with_depth=False, with_poses=False), (12, 16))
    check_common_sample(without[0], (12, 16), 2, depth_hw=None, has_poses=False)
    assert len(without) == 6


def test_intrinsics_from_the_folder_name_table(tmp_path):
    stamps = 1311868164.0 + np.arange(3) / 30.0
    folder = tmp_path / "rgbd_dataset_freiburg2_desk"
    write_tum(folder, stamps, stamps, stamps, image_hw=(480, 640), intrinsics_line=None)
    sample = FrameSamples(TumRgbdReader(folder), (240, 320))[0]
    expected = torch.tensor([[520.9 / 2, 0, (325.1 + 0.5) / 2 - 0.5], [0, 521.0 / 2, (249.7 + 0.5) / 2 - 0.5],
                             [0, 0, 1]])
    torch.testing.assert_close(sample["K"], expected)
    override = torch.tensor([[100.0, 0, 300], [0, 100.0, 200], [0, 0, 1]])
    sample = FrameSamples(TumRgbdReader(folder, intrinsics=override.numpy()), (480, 640))[0]
    torch.testing.assert_close(sample["K"], override)


def test_bad_sequences(tmp_path, jittered_sequence):
    folder, rgb, *_ = jittered_sequence
    with pytest.raises(DatasetError, match=r"missing: TUM RGB-D sequence folder does not exist"):
        TumRgbdReader(tmp_path / "missing")

    unnamed = tmp_path / "my_sequence"
    write_tum(unnamed, rgb[:3], rgb[:3], rgb[:3], intrinsics_line=None)
    with pytest.raises(DatasetError, match=r"my_sequence: no intrinsics\.txt and the folder name names no TUM"):
        TumRgbdReader(unnamed)
    (unnamed / "intrinsics.txt").write_text("16 17 15.5 11.5 64 48\n")
    with pytest.raises(DatasetError, match=r"\.png: image is 32x24 but the intrinsics from .*intrinsics\.txt are for"
                                           r" 64x48"):
        TumRgbdReader(unnamed)
    (unnamed / "intrinsics.txt").write_text("16 17 15.5 11.5 32\n")
    with pytest.raises(DatasetError, match=r"intrinsics\.txt: expected one line 'fx fy cx cy' or 'fx fy cx cy "
                                           r"width height'"):
        TumRgbdReader(unnamed)
    fr3 = tmp_path / "rgbd_dataset_freiburg3_office"
    write_tum(fr3, rgb[:3], rgb[:3], rgb[:3], intrinsics_line=None)
    with pytest.raises(DatasetError, match=r"image is 32x24 but the intrinsics from the TUM calibration table are "
                                           r"for 640x480"):
        TumRgbdReader(fr3)

    rgb_list = folder / "rgb.txt"
    text = rgb_list.read_text()
    rgb_list.write_text(text + "1305031103.5 rgb/1305031103.500000.png\n")
    with pytest.raises(DatasetError, match=r"rgb/1305031103\.500000\.png: rgb image listed in the sequence does"):
        TumRgbdReader(folder)
    rgb_list.write_text(text + "1305031103.5\n")
    with pytest.raises(DatasetError, match=r"rgb\.txt:12: expected 'timestamp filename', got 1 columns"):
        TumRgbdReader(folder)
    rgb_list.write_text(text)

    gt = folder / "groundtruth.txt"
    gt_text = gt.read_text()
    gt.write_text(gt_text + "1305031103.5 1 2 3 0 0 0\n")
    with pytest.raises(DatasetError, match=r"groundtruth\.txt:32: expected 8 columns"):
        TumRgbdReader(folder)
    gt.write_text("# nothing near\n1.0 0 0 0 0 0 0 1\n")
    with pytest.raises(DatasetError, match=r"no rgb frame has a depth and ground-truth partner within 0\.02 s"):
        TumRgbdReader(folder)
    gt.write_text(gt_text)

    depth_name = sorted((folder / "depth").iterdir())[4]
    truncate(depth_name)
    with pytest.raises(DatasetError, match=rf"{depth_name.name}: cannot decode depth PNG"):
        FrameSamples(TumRgbdReader(folder), (12, 16))[3]
    assert cv2.imwrite(str(depth_name), np.zeros((24, 32), np.uint8))
    with pytest.raises(DatasetError, match=r"depth PNG must be single-channel uint16"):
        FrameSamples(TumRgbdReader(folder), (12, 16))[3]
    write_rgb(sorted((folder / "rgb").iterdir())[0], np.zeros((24, 32, 3), np.uint8))
    truncate(sorted((folder / "rgb").iterdir())[0])
    with pytest.raises(DatasetError, match=r"\.png: cannot decode image"):
        TumRgbdReader(folder)  # the first frame is decoded to check the intrinsics' size


def test_published_distortion_of_the_sensor_is_removed_from_rgb_and_depth(tmp_path):
    stamps = 1305031102.0 + np.arange(2) / 30.0
    folder = tmp_path / "rgbd_dataset_freiburg1_xyz"
    write_tum(folder, stamps, stamps, stamps, image_hw=(480, 640), intrinsics_line=None)
    # A checkerboard of 40-pixel squares: fr1's lens (k1 = 0.26) moves its corners by pixels, not its centre.
    v, u = np.mgrid[0:480, 0:640]
    board = (((u // 40 + v // 40) % 2) * 255).astype(np.uint8)
    raw_frame = sorted((folder / "rgb").iterdir())[0]
    write_rgb(raw_frame, np.repeat(board[:, :, None], 3, axis=2))
    rectified_reader, raw_reader = TumRgbdReader(folder), TumRgbdReader(folder, undistort=False)
    frame, raw = rectified_reader.sequences[0][0], raw_reader.sequences[0][0]
    assert frame.distortion is None and raw.distortion.model == "plumb_bob"
    assert raw.distortion.coefficients == (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)
    np.testing.assert_array_equal(frame.K, raw.K)  # the rectified camera keeps TUM's K
    rectified, stored = rectified_reader.load_rgb(frame)[..., 0], raw_reader.load_rgb(raw)[..., 0]
    np.testing.assert_array_equal(stored, board)
    centre = (slice(200, 280), slice(280, 360))
    wrong = np.abs(rectified.astype(int) - board) > 127
    assert wrong[centre].mean() < 0.02  # little distortion near the principal point
    assert wrong[:80, :80].mean() > 0.1  # squares moved in the corner
    depth = rectified_reader.load_depth(frame)
    assert depth[240, 320] == 1.0 and set(np.unique(depth)) <= {0.0, 1.0}  # nearest: no blended depths
