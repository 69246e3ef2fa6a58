"""Bad input: one clear error line naming the file or topic, exit status 1, and no output (or staging folder) left;
SIGTERM while writing: exit status 143, one line, no staging folder left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from rosbag_tools import messages
from rosbag_tools.__main__ import EXAMPLES, build_parser

REPO_ROOT = Path(__file__).resolve().parents[2]
# bag2frames with every PNG written followed by a long sleep: surely still writing when the test signals it.
SLOW_BAG2FRAMES = """
import sys, time
from rosbag_tools import bag_to_frames
from rosbag_tools.__main__ import main
write_png = bag_to_frames._write_png
def write_then_wait(*args):
    write_png(*args)
    time.sleep(600)
bag_to_frames._write_png = write_then_wait
sys.exit(main(sys.argv[1:]))
"""


def folder_contents(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes): equal before and after means nothing was touched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_failed_cleanly(result: tuple[int, str, str], *fragments: str, out_dir: Path) -> None:
    status, _, err = result
    assert status == 1
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    for fragment in fragments:
        assert fragment in err
    assert not any(p.name.startswith(".") and "partial" in p.name for p in out_dir.iterdir()), list(out_dir.iterdir())


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory, synthetic_tum_sequence) -> Path:
    from rosbag_tools.__main__ import main

    bag = tmp_path_factory.mktemp("bad_input") / "bag"
    assert main(["synth2bag", "--sequence", str(synthetic_tum_sequence), "-o", str(bag), "--no-progress"]) == 0
    return bag


def test_folder_that_is_not_a_kitti_sequence(cli, tmp_path):
    (tmp_path / "holiday_photos").mkdir()
    result = cli("kitti2bag", tmp_path / "holiday_photos", "-o", tmp_path / "bag")
    assert_failed_cleanly(result, "holiday_photos", "neither a KITTI raw drive", out_dir=tmp_path)
    assert not (tmp_path / "bag").exists()


def test_kitti_raw_without_calibration(cli, dataset_writers, tmp_path):
    drive = dataset_writers.write_kitti_raw(tmp_path / "raw", num_frames=3)
    (drive.parent / "calib_cam_to_cam.txt").unlink()
    result = cli("kitti2bag", drive, "-o", tmp_path / "bag")
    assert_failed_cleanly(result, "calib_cam_to_cam.txt", "does not exist", out_dir=tmp_path)
    assert not (tmp_path / "bag").exists()


def test_kitti_odometry_without_calibration(cli, dataset_writers, tmp_path):
    dataset_writers.write_kitti_odometry(tmp_path / "odometry", num_frames=3)
    (tmp_path / "odometry" / "sequences" / "00" / "calib.txt").unlink()
    result = cli("kitti2bag", tmp_path / "odometry" / "sequences" / "00", "-o", tmp_path / "bag")
    assert_failed_cleanly(result, "calib.txt", out_dir=tmp_path)
    assert not (tmp_path / "bag").exists()


def test_folder_that_is_not_a_tum_sequence(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_failed_cleanly(cli("tum2bag", tmp_path / "empty", "-o", tmp_path / "bag"), "no rgb.txt", out_dir=tmp_path)


def test_corrupt_frame_halfway_leaves_no_bag(cli, dataset_writers, tmp_path):
    stamps = 1305031102.175304 + 0.0333 * np.arange(5)
    folder = tmp_path / "sequence"
    dataset_writers.write_tum(folder, stamps, stamps, stamps)
    corrupt = folder / f"rgb/{stamps[3]:.6f}.png"
    dataset_writers.truncate(corrupt)
    for storage in ("mcap", "sqlite3"):
        result = cli("tum2bag", folder, "-o", tmp_path / "bag", "--storage", storage, "--no-progress")
        assert_failed_cleanly(result, str(corrupt), "cannot decode", out_dir=tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["sequence"]


def test_existing_output_is_never_overwritten(cli, small_bag, tmp_path):
    out = tmp_path / "frames"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = cli("bag2frames", small_bag, "-o", out)
    assert_failed_cleanly(result, "already exists", out_dir=tmp_path)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_sigterm_removes_the_partial_output(small_bag, tmp_path, signal_cli_while_writing):
    before = folder_contents(small_bag)
    out = tmp_path / "frames"
    status, err = signal_cli_while_writing(SLOW_BAG2FRAMES, ["bag2frames", small_bag, "-o", out, "--no-progress"],
                                           tmp_path, ".frames.partial-*/frames/rgb/*.png")
    assert status == 128 + signal.SIGTERM, err
    assert err.strip() == (f"python -m rosbag_tools bag2frames: interrupted by SIGTERM; the partial {out} was removed, "
                           "run the command again")
    assert list(tmp_path.iterdir()) == []
    assert folder_contents(small_bag) == before


def test_stale_staging_of_a_dead_run_is_removed(cli, small_bag, tmp_path):
    finished = subprocess.Popen(["true"])
    finished.wait()
    stale = tmp_path / f".frames.partial-{finished.pid}"
    (stale / "frames" / "rgb").mkdir(parents=True)
    kept = [tmp_path / f".frames.partial-{os.getpid()}x", tmp_path / f".bag.partial-{finished.pid}",
            tmp_path / f".frames.partial-{os.getppid()}"]  # not a pid; another output; a running process
    for folder in kept:
        folder.mkdir()
    status, _, err = cli("bag2frames", small_bag, "-o", tmp_path / "frames", "--no-progress")
    assert status == 0, err
    assert not stale.exists() and all(folder.is_dir() for folder in kept)
    assert (tmp_path / "frames" / "rgb.txt").is_file()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag(cli, synthetic_tum_sequence, tmp_path, storage):
    bag = tmp_path / "bag"
    assert cli("synth2bag", "--sequence", synthetic_tum_sequence, "-o", bag, "--storage", storage,
               "--no-progress")[0] == 0
    (storage_file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    data = storage_file.read_bytes()
    storage_file.write_bytes(data[: len(data) // 3])
    assert_failed_cleanly(cli("info", bag), str(bag), "cannot", out_dir=tmp_path)
    assert_failed_cleanly(cli("bag2frames", bag, "-o", tmp_path / "frames"), str(bag), "cannot", out_dir=tmp_path)
    assert not (tmp_path / "frames").exists()


def test_image_topic_without_camera_info(cli, tmp_path):
    from rosbags.rosbag2 import Writer

    bag = tmp_path / "no_info"
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    with Writer(bag, version=9) as writer:
        connection = writer.add_connection("/front/image_raw", messages.IMAGE, typestore=messages.TYPESTORE)
        for i in range(3):
            writer.write(connection, i * 10**8, messages.serialize(messages.image_rgb8(i * 10**8, "c", rgb),
                                                                   messages.IMAGE))
    result = cli("bag2frames", bag, "-o", tmp_path / "frames")
    assert_failed_cleanly(result, "'/front/image_raw'", "'/front/camera_info'", "--camera-info-topic",
                          out_dir=tmp_path)
    assert not (tmp_path / "frames").exists()


def test_unsupported_image_encoding_names_the_topic(cli, small_bag, tmp_path):
    # The 32FC1 depth topic is not a colour camera: asking for it as the image topic must fail by name.
    result = cli("bag2frames", small_bag, "-o", tmp_path / "frames", "--image-topic", "/ground_truth/depth",
                 "--camera-info-topic", "/camera/camera_info")
    assert_failed_cleanly(result, "'/ground_truth/depth'", "cannot decode", out_dir=tmp_path)
    assert not (tmp_path / "frames").exists()


def test_padded_image_rows_are_decoded_not_sheared(cli, tmp_path):
    from rosbags.rosbag2 import Writer

    bag = tmp_path / "padded"
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    padded = np.zeros((4, 20), dtype=np.uint8)  # 18 bytes of pixels + 2 bytes of row padding
    padded[:, :18] = rgb.reshape(4, 18)
    K = np.array([[5.0, 0, 2.5], [0, 5.0, 1.5], [0, 0, 1]])
    with Writer(bag, version=9) as writer:
        image = writer.add_connection("/cam/image", messages.IMAGE, typestore=messages.TYPESTORE)
        info = writer.add_connection("/cam/camera_info", messages.CAMERA_INFO, typestore=messages.TYPESTORE)
        for i in range(3):
            stamp = i * 10**8
            message = messages.TYPESTORE.types[messages.IMAGE](header=messages.header(stamp, "c"), height=4, width=6,
                                                               encoding="rgb8", is_bigendian=0, step=20,
                                                               data=padded.reshape(-1))
            writer.write(info, stamp, messages.serialize(messages.camera_info(stamp, "c", K, (4, 6)),
                                                         messages.CAMERA_INFO))
            writer.write(image, stamp, messages.serialize(message, messages.IMAGE))
    status, _, err = cli("bag2frames", bag, "-o", tmp_path / "frames")
    assert status == 0, err
    written = sorted((tmp_path / "frames" / "rgb").glob("*.png"))
    assert len(written) == 3
    for path in written:
        np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), rgb)


def test_missing_topics_list_the_bag_topics(cli, small_bag, tmp_path):
    result = cli("bag2frames", small_bag, "-o", tmp_path / "frames", "--image-topic", "/nope")
    assert_failed_cleanly(result, "'/nope'", "/camera/image", out_dir=tmp_path)
    result = cli("bag2frames", small_bag, "-o", tmp_path / "frames", "--depth-topic", "/nope/depth")
    assert_failed_cleanly(result, "'/nope/depth'", out_dir=tmp_path)
    result = cli("bag2frames", small_bag, "-o", tmp_path / "frames", "--image-topic", "/camera/image",
                 "--depth-topic", "/camera/camera_info")
    assert_failed_cleanly(result, "'/camera/camera_info'", "expected sensor_msgs/msg/Image", out_dir=tmp_path)
    assert not (tmp_path / "frames").exists()


def test_changing_intrinsics_are_refused(cli, tmp_path):
    from rosbags.rosbag2 import Writer

    bag = tmp_path / "zoom"
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    K = np.array([[5.0, 0, 2.5], [0, 5.0, 1.5], [0, 0, 1]])
    with Writer(bag, version=9) as writer:
        image = writer.add_connection("/cam/image", messages.IMAGE, typestore=messages.TYPESTORE)
        info = writer.add_connection("/cam/camera_info", messages.CAMERA_INFO, typestore=messages.TYPESTORE)
        for i in range(4):
            stamp = i * 10**8
            zoom = K * np.array([[1 + (i >= 2), 1, 1], [1, 1 + (i >= 2), 1], [1, 1, 1]])  # focal doubles at frame 2
            writer.write(info, stamp, messages.serialize(messages.camera_info(stamp, "c", zoom, (4, 6)),
                                                         messages.CAMERA_INFO))
            writer.write(image, stamp, messages.serialize(messages.image_rgb8(stamp, "c", rgb), messages.IMAGE))
    result = cli("bag2frames", bag, "-o", tmp_path / "frames")
    assert_failed_cleanly(result, "'/cam/camera_info'", "changes K at frame 2", out_dir=tmp_path)


def test_bad_synthetic_specification(cli, tmp_path):
    result = cli("synth2bag", "--scene", "moon", "--motion", "car", "--frames", 3, "-o", tmp_path / "bag")
    assert_failed_cleanly(result, "unknown scene 'moon'", out_dir=tmp_path)


def test_compression_only_for_mcap(cli, synthetic_tum_sequence, tmp_path):
    result = cli("synth2bag", "--sequence", synthetic_tum_sequence, "-o", tmp_path / "bag", "--storage", "sqlite3",
                 "--compress")
    assert_failed_cleanly(result, "mcap storage only", out_dir=tmp_path)
    assert not (tmp_path / "bag").exists()


def test_every_command_has_help_with_an_example(capsys):
    parser = build_parser()
    for command in EXAMPLES:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "example" in text and f"python -m rosbag_tools {command}" in text


def test_command_line_exit_status_and_message(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rosbag_tools", "info", str(tmp_path / "missing_bag")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == f"python -m rosbag_tools info: error: {tmp_path / 'missing_bag'}: rosbag2 does " \
                                    "not exist"
