"""Every reader checks each frame's size against its sequence's first frame when it loads; TUM's intrinsics.txt
may carry only ``fx fy cx cy`` and rejects non-finite or non-positive values by file and line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import (
    KITTI_RAW_DATE,
    KITTI_RAW_DRIVE,
    KITTI_RAW_HW,
    flat_image,
    write_kitti_odometry,
    write_kitti_raw,
    write_rgb,
    write_split,
    write_tum,
)

from priordepth_core.data import DatasetError, FrameSamples, KittiOdometryReader, KittiRawReader, TumRgbdReader
from priordepth_core.data.tum_rgbd import read_intrinsics_file

STAMPS = 1305031102.0 + np.arange(6) / 30.0
OTHER_HW = (30, 40)


def tum_sequence(tmp_path, intrinsics_line="16.0 17.0 15.5 11.5 32 24"):
    folder = tmp_path / "my_sequence"
    write_tum(folder, STAMPS, STAMPS, STAMPS, intrinsics_line=intrinsics_line)
    return folder


def test_four_value_intrinsics_take_the_size_of_the_first_image(tmp_path):
    folder = tum_sequence(tmp_path, intrinsics_line="16 17 15.5 11.5")
    K, size_hw = read_intrinsics_file(folder / "intrinsics.txt")
    np.testing.assert_array_equal(K, [[16, 0, 15.5], [0, 17, 11.5], [0, 0, 1]])
    assert size_hw is None
    sample = FrameSamples(TumRgbdReader(folder), (12, 16))[0]
    # K is for the 32x24 images, scaled to 16x12 as with "fx fy cx cy 32 24".
    torch.testing.assert_close(sample["K"], torch.tensor([[8.0, 0, 7.5], [0, 8.5, 5.5], [0, 0, 1]]))


@pytest.mark.parametrize("line, problem", [
    ("nan 17 15.5 11.5", "fx is nan"),
    ("16 inf 15.5 11.5 32 24", "fy is inf"),
    ("16 17 -15.5 11.5", "cx is -15.5"),
    ("0 17 15.5 11.5 32 24", "fx is 0.0"),
    ("16 17 15.5 11.5 0 24", "width is 0.0"),
    ("16 17 15.5 11.5 32.5 24", "width and height must be whole pixel counts"),
    ("16 17 15.5 eleven", "non-numeric value in '16 17 15.5 eleven'"),
])
def test_bad_intrinsics_values_name_the_file_and_line(tmp_path, line, problem):
    folder = tum_sequence(tmp_path, intrinsics_line=line)
    with pytest.raises(DatasetError) as error:
        TumRgbdReader(folder)
    # write_tum puts a '#' header on line 1: the values are on line 2.
    assert f"{folder / 'intrinsics.txt'}:2: {problem}" in str(error.value)


@pytest.mark.parametrize("intrinsics_line", ["16.0 17.0 15.5 11.5 32 24", "16 17 15.5 11.5"], ids=["6", "4"])
def test_tum_frame_of_another_size_is_refused_when_it_loads(tmp_path, intrinsics_line):
    folder = tum_sequence(tmp_path, intrinsics_line)
    changed = folder / f"rgb/{STAMPS[3]:.6f}.png"
    write_rgb(changed, flat_image(3, *OTHER_HW))
    dataset = FrameSamples(TumRgbdReader(folder), (12, 16))  # indexing reads no more than the first frame
    dataset[0]  # frames 0, 1, 2: all 32x24
    with pytest.raises(DatasetError) as error:
        dataset[1]  # frame 3 is the +1 context
    first = folder / f"rgb/{STAMPS[0]:.6f}.png"
    assert str(error.value).startswith(f"{changed}: image is 40x30 but the sequence's first frame {first} is 32x24")
    with pytest.raises(DatasetError, match=r"image is 40x30 but the sequence's first frame .* is 32x24"):
        dataset.reader.load_rgb(dataset.reader.sequences[0][3])  # as the converters and the Pipeline sources load


def test_kitti_raw_frame_of_another_size_is_refused_when_it_loads(tmp_path):
    drive = write_kitti_raw(tmp_path / "raw")
    changed = drive / "image_02" / "data" / "0000000004.png"
    write_rgb(changed, flat_image(4, *OTHER_HW))
    folder = f"{KITTI_RAW_DATE}/{KITTI_RAW_DRIVE}"
    dataset = FrameSamples(KittiRawReader(tmp_path / "raw", write_split(tmp_path / "split.txt", [f"{folder} {i} l"
                                                                                     for i in (2, 3)])), (12, 20))
    dataset[0]
    height, width = KITTI_RAW_HW
    with pytest.raises(DatasetError) as error:
        dataset[1]
    first = drive / "image_02" / "data" / "0000000000.png"
    assert str(error.value).startswith(f"{changed}: image is 40x30 but the sequence's first frame {first} is "
                                       f"{width}x{height}")


def test_kitti_odometry_frame_of_another_size_is_refused_when_it_loads(tmp_path):
    write_kitti_odometry(tmp_path, num_frames=5)
    changed = tmp_path / "sequences" / "00" / "image_2" / "000003.png"
    write_rgb(changed, flat_image(3, *OTHER_HW))
    dataset = FrameSamples(KittiOdometryReader(tmp_path, ["00"]), (12, 24))
    dataset[0]
    with pytest.raises(DatasetError, match=r"000003\.png: image is 40x30 but the sequence's first frame .*000000\.png "
                                           r"is 48x24; one sequence shares one size"):
        dataset[1]
    # The first frame itself of another size: every later frame is named against it.
    write_rgb(changed, flat_image(3, 24, 48))
    write_rgb(changed.with_name("000000.png"), flat_image(0, *OTHER_HW))
    with pytest.raises(DatasetError, match=r"000002\.png: image is 48x24 but the sequence's first frame .*000000\.png "
                                           r"is 40x30"):
        FrameSamples(KittiOdometryReader(tmp_path, ["00"]), (12, 24))[1]


def test_same_size_sequences_load_every_frame(tmp_path):
    folder = tum_sequence(tmp_path)
    dataset = FrameSamples(TumRgbdReader(folder), (12, 16))
    assert all(dataset[i]["image"].shape == (3, 12, 16) for i in range(len(dataset)))
