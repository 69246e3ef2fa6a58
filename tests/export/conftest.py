"""Fixtures of the export tests: a tiny untrained packaged model, a private ONNX cache."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_export_model(tmp_path_factory):
    """Untrained lite networks (16-d descriptors) packaged at the trained size 64x96."""
    from priordepth_core.inference import save_inference_model, untrained_inference_model

    path = tmp_path_factory.mktemp("export_model") / "tiny.pt"
    save_inference_model(untrained_inference_model((64, 96), descriptor_dim=16, seed=1), path)
    return path
