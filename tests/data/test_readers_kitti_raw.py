"""KITTI raw reader: split files, calibration, context skipping, velodyne ground truth, augmentation, bad input."""

from __future__ import annotations

import calendar

import numpy as np
import pytest
import torch
from conftest import (
    KITTI_RAW_DATE,
    KITTI_RAW_DRIVE,
    KITTI_RAW_HW,
    KITTI_RAW_P2,
    KITTI_RAW_P3,
    check_common_sample,
    frame_color,
    mean_color,
    truncate,
    velodyne_point_for_pixel,
    write_kitti_raw,
    write_split,
)

from priordepth_core.data import Augmentation, DatasetError, FrameSamples, KittiRawReader
from priordepth_core.data.kitti_raw import read_kitti_timestamps, velodyne_projection, velodyne_to_depth_map

FOLDER = f"{KITTI_RAW_DATE}/{KITTI_RAW_DRIVE}"
DRIVE_START = calendar.timegm((2011, 9, 26, 13, 2, 25))  # the fixture's first timestamp, whole seconds, UTC


@pytest.fixture
def raw_root(tmp_path):
    write_kitti_raw(tmp_path / "raw")
    return tmp_path / "raw"


def split(tmp_path, lines):
    return write_split(tmp_path / "split.txt", lines)


def test_samples_follow_the_contract_and_skip_border_frames(tmp_path, raw_root):
    split_file = split(tmp_path, [f"{FOLDER} {i} l" for i in range(6)] + [f"{FOLDER} 2 r"])
    dataset = FrameSamples(KittiRawReader(raw_root, split_file), size_hw=(12, 20))
    # Frames 0 and 5 of the 6-frame drive lack a -1 / +1 neighbour.
    assert [dataset[i]["frame_index"] for i in range(len(dataset))] == [1, 2, 3, 4, 2]
    sample = dataset[1]
    check_common_sample(sample, (12, 20), 2, depth_hw=None, has_poses=False)
    assert sample["sequence"] == f"{FOLDER}/image_02"
    assert sample["context_offsets"].tolist() == [-1, 1]
    np.testing.assert_allclose(mean_color(sample["image"]), frame_color(2), atol=0.01)
    np.testing.assert_allclose(mean_color(sample["context"][0]), frame_color(1), atol=0.01)
    np.testing.assert_allclose(mean_color(sample["context"][1]), frame_color(3), atol=0.01)
    # 40x24 -> 20x12 halves f; the principal point maps with pixel centres at integers: (19.5 + 0.5) / 2 - 0.5.
    expected_K = torch.tensor([[15.0, 0.0, 9.5], [0.0, 15.0, 5.5], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(sample["K"], expected_K)
    assert sample["stamp"] == pytest.approx(DRIVE_START + 0.000964389 + 2 * 0.1037, abs=1e-6)
    right = dataset[4]
    assert right["sequence"] == f"{FOLDER}/image_03"
    torch.testing.assert_close(right["K"], expected_K)  # P_rect_03 has the same K, another baseline


def test_timestamps_parse_to_unix_seconds(raw_root):
    stamps = read_kitti_timestamps(raw_root / FOLDER / "image_02" / "timestamps.txt")
    assert stamps[0] == pytest.approx(DRIVE_START + 0.000964389, abs=1e-6)
    np.testing.assert_allclose(np.diff(stamps), 0.1037, atol=1e-6)


def test_velodyne_projection_matches_hand_placed_points(raw_root):
    P2 = KITTI_RAW_P2
    # Pixel (u, v) of the map receives a point projecting to (u + 1, v + 1): MonoDepth2's 1-based shift.
    near = velodyne_point_for_pixel(5 + 1, 7 + 1, 4.0, P2)
    far_same_pixel = velodyne_point_for_pixel(5 + 1.3, 7 + 0.8, 9.0, P2)  # rounds to the same pixel; nearer wins
    corner = velodyne_point_for_pixel(39 + 1, 23 + 1, 12.5, P2)  # last pixel
    shifted_out = velodyne_point_for_pixel(0.4, 3.0, 5.0, P2)  # rounds to u = 0, then -1: dropped
    outside = velodyne_point_for_pixel(60.0, 3.0, 5.0, P2)
    behind = np.array([-3.0, 0.5, 0.2])  # velodyne x < 0
    points = np.array([near, far_same_pixel, corner, shifted_out, outside, behind])
    points = np.concatenate([points, np.full((6, 1), 0.3)], axis=1).astype(np.float32)
    points.tofile(raw_root / FOLDER / "velodyne_points" / "data" / "0000000002.bin")

    P_velo_to_image, image_hw = velodyne_projection(raw_root / KITTI_RAW_DATE, camera=2)
    assert image_hw == KITTI_RAW_HW
    depth = velodyne_to_depth_map(points, P_velo_to_image, image_hw)
    expected = np.zeros(KITTI_RAW_HW, dtype=np.float32)
    expected[7, 5] = 4.0
    expected[23, 39] = 12.5
    np.testing.assert_allclose(depth, expected, atol=2e-5)  # float32 storage of the scan

    split_file = write_split(raw_root.parent / "split.txt", [f"{FOLDER} 2 l"])
    native = FrameSamples(KittiRawReader(raw_root, split_file, with_depth=True), size_hw=(12, 20),
                          depth_at_native_resolution=True)
    sample = native[0]
    check_common_sample(sample, (12, 20), 2, depth_hw=KITTI_RAW_HW, has_poses=False)
    np.testing.assert_allclose(sample["depth_gt"][0].numpy(), expected, atol=2e-5)
    resized = FrameSamples(KittiRawReader(raw_root, split_file, with_depth=True), size_hw=(12, 20))[0]["depth_gt"]
    assert resized.shape == (1, 12, 20)
    # Nearest neighbour at pixel centres: output (r, c) reads input (2r + 1, 2c + 1); (23, 39) -> (11, 19).
    assert resized[0, 11, 19].item() == pytest.approx(12.5, abs=2e-5)
    assert set(np.unique(resized.numpy()).round(3)) <= {0.0, 4.0, 12.5}


def test_right_camera_projection_uses_p_rect_03(raw_root):
    P_velo_to_image, _ = velodyne_projection(raw_root / KITTI_RAW_DATE, camera=3)
    point = velodyne_point_for_pixel(10 + 1, 4 + 1, 6.0, KITTI_RAW_P3)
    depth = velodyne_to_depth_map(np.append(point, 1.0)[None].astype(np.float32), P_velo_to_image, KITTI_RAW_HW)
    assert np.count_nonzero(depth) == 1 and depth[4, 10] == pytest.approx(6.0, abs=2e-5)


def test_jpg_extension_option(tmp_path):
    write_kitti_raw(tmp_path / "raw", num_frames=3, extension=".jpg")
    reader = KittiRawReader(tmp_path / "raw", split(tmp_path, [f"{FOLDER} 1 l"]), image_extension="jpg")
    dataset = FrameSamples(reader, (12, 20))
    np.testing.assert_allclose(mean_color(dataset[0]["image"]), frame_color(1), atol=3.0)  # JPEG is lossy


def test_augmentation_is_deterministic_and_flip_mirrors_k(tmp_path, raw_root):
    split_file = split(tmp_path, [f"{FOLDER} {i} l" for i in range(1, 5)])
    plain = FrameSamples(KittiRawReader(raw_root, split_file), (12, 20))
    jitter = Augmentation(color_jitter_probability=1.0, flip_probability=0.0, seed=7)
    a = FrameSamples(KittiRawReader(raw_root, split_file), (12, 20), augmentation=jitter)
    b = FrameSamples(KittiRawReader(raw_root, split_file), (12, 20), augmentation=jitter)
    torch.testing.assert_close(a[2]["image"], b[2]["image"], rtol=0, atol=0)
    assert not torch.allclose(a[2]["image"], plain[2]["image"], atol=1e-3)
    first = a[2]["image"].clone()
    a.set_epoch(1)
    assert not torch.allclose(a[2]["image"], first, atol=1e-4)  # a new epoch draws new factors
    flip = FrameSamples(KittiRawReader(raw_root, split_file), (12, 20),
                        augmentation=Augmentation(color_jitter_probability=0.0, flip_probability=1.0))
    flipped, original = flip[0], plain[0]
    assert flipped["K"][0, 2].item() == pytest.approx(19 - original["K"][0, 2].item())
    torch.testing.assert_close(flipped["image"], original["image"].flip(-1))
    torch.testing.assert_close(flipped["context"], original["context"].flip(-1))


@pytest.mark.parametrize(
    "lines, pattern",
    [
        ([f"{FOLDER} 2"], r"split\.txt:1: expected '<date>/<drive> <frame> l\|r'"),
        ([f"{FOLDER} 2 x"], r"split\.txt:1: expected"),
        ([f"{FOLDER} two l"], r"split\.txt:1: expected"),
        ([f"{FOLDER} 9 l"], r"0000000009\.png: image listed in the split file does not exist"),
        ([f"{KITTI_RAW_DATE}/2011_09_26_drive_0002_sync 2 l"], r"drive_0002_sync/image_02/data: image folder does"),
        ([f"{FOLDER} 0 l"], r"no target frame has all context frames \(-1, 1\)"),
    ],
)
def test_bad_split_files(tmp_path, raw_root, lines, pattern):
    with pytest.raises(DatasetError, match=pattern):
        FrameSamples(KittiRawReader(raw_root, split(tmp_path, lines)), (12, 20))  # the last case: no sample target


def test_bad_folders_and_files(tmp_path, raw_root):
    split_file = split(tmp_path, [f"{FOLDER} 2 l"])
    with pytest.raises(DatasetError, match=r"nowhere: KITTI raw root folder does not exist"):
        KittiRawReader(tmp_path / "nowhere", split_file)
    with pytest.raises(DatasetError, match=r"missing\.txt: split file does not exist"):
        KittiRawReader(raw_root, tmp_path / "missing.txt")

    (raw_root / FOLDER / "velodyne_points" / "data" / "0000000002.bin").unlink()
    with pytest.raises(DatasetError, match=r"0000000002\.bin: velodyne scan of a split frame does not exist"):
        KittiRawReader(raw_root, split_file, with_depth=True)

    times = raw_root / FOLDER / "image_02" / "timestamps.txt"
    times.write_text("\n".join(times.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(DatasetError, match=r"timestamps\.txt: has 5 timestamps but .* has 6 images"):
        KittiRawReader(raw_root, split_file)

    (raw_root / FOLDER / "image_02" / "data" / "0000000004.png").unlink()
    with pytest.raises(DatasetError, match=r"image_02/data: frame numbering has a gap: frame 4 is missing"):
        KittiRawReader(raw_root, split_file)

    (raw_root / KITTI_RAW_DATE / "calib_cam_to_cam.txt").unlink()
    with pytest.raises(DatasetError, match=r"calib_cam_to_cam\.txt: calibration file does not exist"):
        KittiRawReader(raw_root, split(tmp_path, [f"{FOLDER} 2 r"]))


def test_calibration_entry_problems_and_truncated_files(tmp_path, raw_root):
    split_file = split(tmp_path, [f"{FOLDER} 2 l"])
    calib = raw_root / KITTI_RAW_DATE / "calib_cam_to_cam.txt"
    text = calib.read_text()
    calib.write_text("\n".join(line for line in text.splitlines() if not line.startswith("P_rect_02")) + "\n")
    with pytest.raises(DatasetError, match=r"calib_cam_to_cam\.txt: missing calibration entry 'P_rect_02'"):
        KittiRawReader(raw_root, split_file)
    calib.write_text(text)

    velodyne = raw_root / FOLDER / "velodyne_points" / "data" / "0000000002.bin"
    velodyne.write_bytes(np.ones(6, dtype=np.float32).tobytes())
    dataset = FrameSamples(KittiRawReader(raw_root, split_file, with_depth=True), (12, 20))
    with pytest.raises(DatasetError, match=r"0000000002\.bin: velodyne scan has 6 floats, not a multiple of 4"):
        dataset[0]

    truncate(raw_root / FOLDER / "image_02" / "data" / "0000000003.png")
    with pytest.raises(DatasetError, match=r"0000000003\.png: cannot decode image"):
        FrameSamples(KittiRawReader(raw_root, split_file), (12, 20))[0]  # the +1 context frame
