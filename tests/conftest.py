"""Shared fixtures: dtype/device parametrisation (CUDA only when present) and the path of the read-only shared data."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need it skip in a user's fresh clone."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (only present in the project's workspace)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def plane_sequence_checkpoint(tmp_path_factory):
    """A trainer checkpoint (2 steps, lite networks) on the tiny exact plane sequence of tests/train/conftest.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("plane_fixture", REPO_ROOT / "tests" / "train" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path_factory.mktemp("plane_checkpoint")
    sequence = module.write_plane_sequence(root / "seq")
    from priordepth_core.train.config import load_config
    from priordepth_core.train.trainer import Trainer

    config = load_config(overrides=[
        "data.kind=tum", f"data.path={sequence}", "data.height=64", "data.width=96", "model.lite=true",
        "model.max_depth=20.0", "optim.batch_size=2", "optim.max_steps=2", f"run.out_dir={root / 'run'}",
        "run.log_every=1", "run.eval_each_epoch=false"])
    trainer = Trainer(config)
    trainer.fit()
    trainer.close()
    return root / "run" / "last.pt"


@pytest.fixture
def signal_cli_while_writing():
    """``run(code, argv, staged_file_pattern, folder, signum)`` -> (exit status, stderr).

    Starts ``python -c code argv...`` (code calls a CLI's main, slowed down so that it is still writing), waits until
    a file matching ``staged_file_pattern`` exists under ``folder`` (the CLI's staging folder), sends ``signum``
    and waits for the process to end.
    """
    started = []

    def run(code: str, argv: list, folder: Path, staged_file_pattern: str,
            signum: int = signal.SIGTERM) -> tuple[int, str]:
        process = subprocess.Popen([sys.executable, "-c", code, *map(str, argv)], cwd=REPO_ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started.append(process)
        deadline = time.monotonic() + 120
        while not any(folder.glob(staged_file_pattern)):
            if process.poll() is not None:
                pytest.fail(f"ended (status {process.returncode}) before writing: {process.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"nothing matching {staged_file_pattern} under {folder} after 120 s")
            time.sleep(0.05)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        return process.returncode, stderr

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
