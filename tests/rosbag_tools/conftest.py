"""Fixtures of the rosbag_tools tests: tiny datasets in the official on-disk layouts (written by the helpers of
tests/data/conftest.py, loaded by path), one tiny synthetic sequence, and the CLI."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

DATA_FIXTURE_WRITERS = Path(__file__).resolve().parents[1] / "data" / "conftest.py"
# One tiny synthetic sequence (5 frames at 64x48) serves every synthetic test; rendering dominates its cost.
SYNTHETIC_SPEC = {"scene": "room", "motion": "handheld", "frames": 5, "width": 64, "height": 48, "seed": 0}


@pytest.fixture(scope="session")
def dataset_writers():
    """The KITTI raw / KITTI odometry / TUM writers of tests/data/conftest.py, as a module."""
    spec = importlib.util.spec_from_file_location("rosbag_tools_dataset_writers", DATA_FIXTURE_WRITERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def synthetic_tum_sequence(tmp_path_factory) -> Path:
    """The SYNTHETIC_SPEC sequence written by the generator in TUM layout (rgb, depth PNG, depth_exact, poses, K)."""
    from priordepth_core.data.synthetic import SequenceSpec, make_sequence, write_sequence

    spec = SequenceSpec(**SYNTHETIC_SPEC)
    return write_sequence(make_sequence(spec), tmp_path_factory.mktemp("synthetic") / "room_seed0", "tum",
                          progress=False)


@pytest.fixture
def cli(capsys):
    """Run ``python -m rosbag_tools`` in-process: ``cli("info", path)`` -> (exit status, stdout, stderr)."""
    from rosbag_tools.__main__ import main

    def run(*argv) -> tuple[int, str, str]:
        status = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run
