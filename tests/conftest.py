"""Shared fixtures: dtype/device parametrisation (CUDA only when present) and the path of the read-only shared data."""

from __future__ import annotations

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
