"""Writers, CLI and suites of the synthetic generator: official layouts read back exactly, determinism, errors,
atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from priordepth_core.data import FrameSamples
from priordepth_core.data.kitti_odometry import KittiOdometryReader
from priordepth_core.data.synthetic import SequenceSpec, make_sequence, suites, write_sequence, writers
from priordepth_core.data.synthetic import __main__ as cli
from priordepth_core.data.synthetic.writers import TUM_DEPTH_FACTOR, kitti_poses
from priordepth_core.data.trajectory_io import read_trajectory
from priordepth_core.data.tum_rgbd import TumRgbdReader

SHARED_TRAJECTORIES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "trajectories"


@pytest.fixture(scope="module")
def room_sequence():
    return make_sequence(SequenceSpec("room", "handheld", 6, 64, 48, seed=7))


@pytest.fixture(scope="module")
def street_sequence():
    return make_sequence(SequenceSpec("street", "car", 5, 96, 32, seed=7))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tum_round_trip(tmp_path, room_sequence):
    out = write_sequence(room_sequence, tmp_path / "seq", "tum", progress=False)
    stamps, T_world_cam = read_trajectory(out / "groundtruth.txt")
    np.testing.assert_array_equal(stamps, room_sequence.trajectory.stamps)
    np.testing.assert_allclose(T_world_cam, room_sequence.trajectory.T_world_cam, atol=1e-12)
    rgb_lines = [line.split() for line in (out / "rgb.txt").read_text().splitlines() if not line.startswith("#")]
    assert [float(s) for s, _ in rgb_lines] == list(stamps)
    fx, fy, cx, cy, width, height = np.loadtxt(out / "intrinsics.txt")
    np.testing.assert_array_equal([fx, fy, cx, cy], room_sequence.K[[0, 1, 0, 1], [0, 1, 2, 2]])
    assert (width, height) == (64, 48)
    for _, name in rgb_lines:
        stem = Path(name).stem
        exact = np.load(out / "depth_exact" / f"{stem}.npy")
        png = cv2.imread(str(out / "depth" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        rgb = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert exact.dtype == np.float32 and exact.shape == (48, 64) and (exact > 0).all()
        assert png.dtype == np.uint16 and rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
        np.testing.assert_array_less(np.abs(png / TUM_DEPTH_FACTOR - exact), 0.5 / TUM_DEPTH_FACTOR + 1e-6)
    # The project's TUM reader takes the folder as it is: exact depth, poses and intrinsics.
    dataset = FrameSamples(TumRgbdReader(out), size_hw=(48, 64))
    sample = dataset[1]
    index = int(sample["frame_index"])
    np.testing.assert_allclose(sample["K"].numpy(), room_sequence.K, rtol=1e-6)
    np.testing.assert_allclose(sample["T_world_cam"].numpy(), room_sequence.trajectory.T_world_cam[index], atol=1e-5)
    exact = np.load(out / "depth_exact" / f"{Path(rgb_lines[index][1]).stem}.npy")
    np.testing.assert_allclose(sample["depth_gt"][0].numpy(), exact)


def test_kitti_round_trip(tmp_path, street_sequence):
    root = write_sequence(street_sequence, tmp_path / "kitti", "kitti", progress=False)
    folder = root / "sequences" / "00"
    stamps, T_cam0_cam = read_trajectory(root / "poses" / "00.txt", times_path=folder / "times.txt")
    np.testing.assert_array_equal(stamps, street_sequence.trajectory.stamps)
    T = street_sequence.trajectory.T_world_cam
    np.testing.assert_allclose(T_cam0_cam, np.linalg.inv(T[0]) @ T, atol=1e-12)
    np.testing.assert_array_equal(T_cam0_cam[0], np.eye(4))
    calib = {line.split(":")[0]: np.array(line.split(":")[1].split(), dtype=float).reshape(3, 4)
             for line in (folder / "calib.txt").read_text().splitlines()}
    assert sorted(calib) == ["P0", "P1", "P2", "P3"]
    np.testing.assert_allclose(calib["P2"][:, :3], street_sequence.K, rtol=1e-12)
    np.testing.assert_array_equal(calib["P2"][:, 3], 0.0)
    assert calib["P1"][0, 3] == pytest.approx(-street_sequence.K[0, 0] * 0.54)
    images = sorted((folder / "image_2").iterdir())
    assert [p.name for p in images] == [f"{i:06d}.png" for i in range(5)]
    depth = np.load(folder / "depth_exact" / "000003.npy")
    assert depth.dtype == np.float32 and depth.shape == (32, 96) and (depth == 0).any() and (depth > 0).any()
    dataset = FrameSamples(KittiOdometryReader(root, ["00"]), size_hw=(32, 96))
    sample = dataset[2]
    index = int(sample["frame_index"])
    np.testing.assert_allclose(sample["K"].numpy(), street_sequence.K, rtol=1e-6)
    np.testing.assert_allclose(sample["T_world_cam"].numpy(), (np.linalg.inv(T[0]) @ T)[index], atol=1e-4)


def test_evo_reads_written_trajectories(tmp_path, monkeypatch, room_sequence, street_sequence):
    monkeypatch.setenv("HOME", str(tmp_path))  # evo writes its settings under $HOME
    from evo.tools import file_interface

    tum = write_sequence(room_sequence, tmp_path / "tum", "tum", progress=False)
    trajectory = file_interface.read_tum_trajectory_file(str(tum / "groundtruth.txt"))
    np.testing.assert_allclose(np.stack(trajectory.poses_se3), room_sequence.trajectory.T_world_cam, atol=1e-9)
    np.testing.assert_array_equal(trajectory.timestamps, room_sequence.trajectory.stamps)
    kitti = write_sequence(street_sequence, tmp_path / "kitti", "kitti", progress=False)
    poses = file_interface.read_kitti_poses_file(str(kitti / "poses" / "00.txt"))
    np.testing.assert_allclose(np.stack(poses.poses_se3), kitti_poses(street_sequence.trajectory.T_world_cam),
                               atol=1e-9)


@pytest.mark.parametrize("format", ["tum", "kitti"])
def test_same_seed_gives_byte_identical_output(tmp_path, format):
    spec = SequenceSpec("street", "car", 4, 64, 24, seed=11) if format == "kitti" else \
        SequenceSpec("room", "handheld", 4, 48, 32, seed=11)
    first = write_sequence(make_sequence(spec), tmp_path / "a", format, progress=False)
    second = write_sequence(make_sequence(spec), tmp_path / "b", format, progress=False)
    files = _files(first)
    assert len(files) > 8 and files == _files(second)
    other = write_sequence(make_sequence(SequenceSpec(spec.scene, spec.motion, 4, spec.width, spec.height, seed=12)),
                           tmp_path / "c", format, progress=False)
    assert _files(other) != files


def test_cli_writes_a_sequence(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main(["--scene", "room", "--motion", "slow", "--frames", "3", "--size", "40x30", "--seed", "2",
                     "--out", str(out), "--no-progress"]) == 0
    assert len(list((out / "rgb").iterdir())) == 3
    assert json.loads((out / "synthetic.json").read_text())["spec"]["seed"] == 2


@pytest.mark.parametrize("args, message", [
    (["--scene", "forest", "--motion", "car"], "invalid choice: 'forest'"),
    (["--scene", "room", "--motion", "car", "--size", "640by480"], "size must be WIDTHxHEIGHT"),
    (["--scene", "room", "--motion", "car", "--size", "4x4"], "between 8 and 8192"),
    (["--scene", "room", "--motion", "teleport"], "motion must be one of"),
    (["--scene", "room", "--motion", "car", "--frames", "0"], "frames must be a positive integer"),
    (["--scene", "room", "--motion", "{garbage}"], "non-numeric value"),
    (["--scene", "room", "--motion", "{empty}"], "no data lines"),
])
def test_cli_rejects_bad_arguments(tmp_path, capsys, args, message):
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("1 2 3 4 5 6 7 x\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    args = [a.replace("{garbage}", str(garbage)).replace("{empty}", str(empty)) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*args, "--out", str(tmp_path / "out"), "--no-progress"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused(tmp_path, room_sequence):
    (tmp_path / "taken").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        write_sequence(room_sequence, tmp_path / "taken", "tum", progress=False)
    with pytest.raises(ValueError, match="unknown format"):
        write_sequence(room_sequence, tmp_path / "x", "euroc", progress=False)


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failure_leaves_nothing_behind(tmp_path, monkeypatch, room_sequence, error):
    calls = []
    original = writers.depth_to_tum_png

    def failing(depth):
        calls.append(1)
        if len(calls) == 3:
            raise error
        return original(depth)

    monkeypatch.setattr(writers, "depth_to_tum_png", failing)
    with pytest.raises(type(error)):
        write_sequence(room_sequence, tmp_path / "seq", "tum", progress=False)
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []


def test_tiny_suite_is_generated_once_with_manifest(tmp_path, monkeypatch):
    tiny = suites.SuiteDefinition("handheld", "room", "handheld", 32, 24, 3, (1, 2), (3,), "tiny")
    monkeypatch.setitem(suites.SUITES, "handheld", tiny)
    monkeypatch.setenv("PRIORDEPTH_CACHE", str(tmp_path / "cache"))
    root = suites.ensure_suite("handheld")
    assert root == tmp_path / "cache" / "suites" / f"handheld-v{suites.SUITE_VERSION}"
    manifest = suites.load_manifest(root)
    assert manifest["format"] == "tum"
    assert [s["seed"] for s in manifest["splits"]["train"]] == [1, 2]
    assert [s["seed"] for s in manifest["splits"]["test"]] == [3]
    for entry in manifest["splits"]["train"] + manifest["splits"]["test"]:
        assert len(list((root / entry["path"] / "rgb").iterdir())) == 3
    stamp = (root / "suite.json").stat().st_mtime_ns
    assert suites.ensure_suite("handheld") == root and (root / "suite.json").stat().st_mtime_ns == stamp
    assert [p.name for p in root.parent.iterdir()] == [root.name]  # no temporary folders left
    with pytest.raises(ValueError, match="unknown suite"):
        suites.ensure_suite("flying")


def test_suite_definitions_keep_test_seeds_apart():
    for definition in suites.SUITES.values():
        assert not set(definition.train_seeds) & set(definition.test_seeds)
        assert len(definition.train_seeds) >= 6 and len(definition.test_seeds) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(suites.SUITES))
def test_named_suites_generate(tmp_path, name):
    root = suites.ensure_suite(name, root=tmp_path)
    manifest = suites.load_manifest(root)
    for entry in manifest["splits"]["test"]:
        FrameSamples(TumRgbdReader(root / entry["path"]), size_hw=(manifest["height"], manifest["width"]))


@pytest.mark.parametrize("name, scene", [
    ("KITTI_00_gt.txt", "street"), ("freiburg1_xyz-groundtruth.txt", "room"), ("fr2_desk_groundtruth.txt", "room"),
    ("V102_groundtruth.csv", "room"),
])
def test_real_trajectory_replay_renders_in_free_space(tmp_path, name, scene):
    path = SHARED_TRAJECTORIES / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (shared data only exists in the project's workspace)")
    sequence = make_sequence(SequenceSpec(scene, str(path), 30, 48, 32, seed=1, start_s=20.0))  # checks clearance
    out = write_sequence(sequence, tmp_path / "replay", "tum", progress=False)
    _, T_world_cam = read_trajectory(out / "groundtruth.txt")
    steps = np.linalg.norm(np.diff(T_world_cam[:, :3, 3], axis=0), axis=1)
    assert steps.max() < (2.0 if scene == "street" else 0.2)  # real motion, not a jump
    # Down (camera y) stays roughly against world up: the replay is gravity aligned.
    assert np.mean(T_world_cam[:, 2, 1]) < -0.4
