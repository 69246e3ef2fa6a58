"""``python -m priordepth_core.export``: ONNX and TorchScript files that match PyTorch (and say so), TensorRT's
clear refusal without CUDA, and no file left behind on any failure."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from priordepth_core.export.__main__ import main
from priordepth_core.export.parity import compare_outputs, format_rows
from priordepth_core.inference import load_inference_model
from priordepth_core.inference.networks import DepthGraph


def _parity_rows(text: str) -> list[tuple[str, str, float, float]]:
    rows = re.findall(r"^\| (\w+) \| (\d+x\d+) \| ([\d.e+-]+) \| ([\d.e+-]+) \|", text, flags=re.M)
    return [(name, size, float(abs_error), float(rel_error)) for name, size, abs_error, rel_error in rows]


def test_export_onnx_keypoints_matches_pytorch(tiny_export_model, tmp_path, capsys):
    import onnx

    out = tmp_path / "keypoints.onnx"
    assert main(["--checkpoint", str(tiny_export_model), "--format", "onnx", "--part", "keypoints",
                 "--out", str(out)]) == 0
    rows = _parity_rows(capsys.readouterr().out)
    assert [r[:2] for r in rows] == [("score", "64x96"), ("coord", "64x96"), ("desc", "64x96")]
    assert all(rel < 1e-4 for _, _, _, rel in rows)
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["score", "coord", "desc"]
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 96]


@pytest.mark.slow  # the dynamic-shape export of both networks takes 15-35 s on two shared cores
def test_export_onnx_dynamic_matches_pytorch(tiny_export_model, tmp_path, capsys):
    import onnx
    import onnxruntime as ort

    out = tmp_path / "model.onnx"
    assert main(["--checkpoint", str(tiny_export_model), "--format", "onnx", "--out", str(out), "--dynamic"]) == 0
    printed = capsys.readouterr().out
    rows = _parity_rows(printed)
    # Four outputs at the export size and at a second size (dynamic), each within tolerance.
    assert {(r[0], r[1]) for r in rows} == {(o, s) for o in ("depth", "score", "coord", "desc")
                                            for s in ("64x96", "128x128")}
    assert all(rel < 1e-4 for _, _, _, rel in rows)
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == ["depth", "score", "coord", "desc"]
    # Independently of the CLI's own check: another size through ONNX Runtime against PyTorch.
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    image = torch.rand(1, 3, 96, 160, generator=torch.Generator().manual_seed(9))
    depth_onnx = session.run(["depth"], {"image": image.numpy()})[0]
    with torch.no_grad():
        depth_torch = DepthGraph(load_inference_model(tiny_export_model).depth_net)(image).numpy()
    assert depth_onnx.shape == (1, 1, 96, 160)
    assert np.allclose(depth_onnx, depth_torch, rtol=1e-4, atol=1e-6)


def test_export_torchscript_depth_part(tiny_export_model, tmp_path, capsys):
    out = tmp_path / "depth.pt"
    assert main(["--checkpoint", str(tiny_export_model), "--format", "torchscript", "--part", "depth",
                 "--height", "64", "--width", "128", "--out", str(out)]) == 0
    rows = _parity_rows(capsys.readouterr().out)
    assert [r[:2] for r in rows] == [("depth", "64x128")] and rows[0][3] < 1e-4
    with pytest.warns(DeprecationWarning):  # TorchScript is deprecated upstream; C++ deployments still load it
        loaded = torch.jit.load(str(out))
    assert loaded(torch.rand(1, 3, 64, 128)).shape == (1, 1, 64, 128)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error path of a machine without CUDA")
def test_export_tensorrt_without_cuda_exits_clearly(tiny_export_model, tmp_path, capsys):
    out = tmp_path / "model.ep"
    assert main(["--checkpoint", str(tiny_export_model), "--format", "tensorrt", "--precision", "fp16",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "CUDA" in err and "tensorrt" in err
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, message", [
    (["--height", "100", "--width", "96"], "multiple of 32"),
    (["--height", "32", "--width", "96"], "at least 64"),
    (["--height", "64"], "both --height and --width"),
    (["--dynamic", "--format", "torchscript"], "--dynamic is supported for --format onnx only"),
    (["--precision", "fp16"], "applies to --format tensorrt only"),
])
def test_export_rejects_bad_arguments(tiny_export_model, tmp_path, capsys, args, message):
    out = tmp_path / "model.onnx"
    argv = ["--checkpoint", str(tiny_export_model), "--out", str(out), *args]
    if "--format" not in args:
        argv += ["--format", "onnx"]
    assert main(argv) == 1
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_export_rejects_missing_checkpoint_and_folder(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "none.pt"), "--format", "onnx", "--out",
                 str(tmp_path / "m.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["--format", "onnx", "--out", str(tmp_path / "no_folder" / "m.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_export_parity_rows_report_errors():
    reference = [torch.tensor([[1.0, -4.0]]), torch.zeros(2)]
    exported = [np.array([[1.0, -3.9]], dtype=np.float32), np.zeros(2, dtype=np.float32)]
    rows = compare_outputs(["a", "b"], reference, exported, (2, 2))
    assert rows[0].max_abs_error == pytest.approx(0.1, rel=1e-5)
    assert rows[0].max_rel_error == pytest.approx(0.1 / 4.0, rel=1e-5)
    assert not rows[0].passes(1e-4) and rows[0].passes(0.05)
    assert rows[1].max_abs_error == 0.0 and rows[1].passes(1e-4)
    assert "| a | 2x2 |" in format_rows(rows, 1e-4) and "NO" in format_rows(rows, 1e-4)
    with pytest.raises(ValueError, match="shape"):
        compare_outputs(["a"], [torch.zeros(2)], [np.zeros(3)], (1, 1))
