"""Export the inference graph to ONNX, TorchScript or a TensorRT engine, and run the exported artefact back.

Each exporter writes one file and returns a callable that runs what was written (loaded back from the file, not the
in-memory object), so the parity check in :mod:`.__main__` measures the artefact a user deploys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..inference.backends import ort_providers, ort_session_options, require_tensorrt
from ..inference.networks import IMAGE_NAME
from ..inference.onnx_graph import export_onnx_model

FORMATS = ("onnx", "torchscript", "tensorrt")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "tensorrt": ".ep"}

Runner = Callable[[torch.Tensor], list[np.ndarray]]


def export_onnx(graph: nn.Module, example: torch.Tensor, output_names: Sequence[str], path: Path,
                dynamic: bool) -> Runner:
    """Write an ONNX model (weights embedded) and return an ONNX Runtime (CPU) runner of that file."""
    import onnxruntime as ort

    path.write_bytes(export_onnx_model(graph, example, IMAGE_NAME, output_names, dynamic=dynamic))
    session = ort.InferenceSession(str(path), ort_session_options(), providers=ort_providers("cpu"))

    def run(image: torch.Tensor) -> list[np.ndarray]:
        return session.run(None, {IMAGE_NAME: image.detach().cpu().numpy().astype(np.float32)})

    return run


def export_torchscript(graph: nn.Module, example: torch.Tensor, path: Path) -> Runner:
    """Write a traced TorchScript module (``torch.jit.load``-able without this package) and return its runner."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated upstream but still what C++ deployments load
        with torch.no_grad():
            traced = torch.jit.trace(graph.eval(), example, check_trace=False)
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")

    def run(image: torch.Tensor) -> list[np.ndarray]:
        with torch.no_grad():
            outputs = loaded(image)
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return [o.float().numpy() for o in outputs]

    return run


def export_tensorrt(graph: nn.Module, example: torch.Tensor, path: Path, precision: str,
                    device: str = "cuda") -> Runner:
    """Build a TensorRT engine with torch-tensorrt (FP16 or FP32), save it (``torch_tensorrt.save``, ExportedProgram)
    and return a runner of the saved program.

    Raises:
        BackendUnavailableError: no CUDA GPU, or torch-tensorrt is not installed.
    """
    torch_tensorrt = require_tensorrt(device)
    dtype = {"fp16": torch.float16, "fp32": torch.float32}[precision]
    module = graph.to(device).eval()
    example = example.to(device)
    with torch.no_grad():
        engine = torch_tensorrt.compile(module, ir="dynamo", inputs=[example], enabled_precisions={dtype})
        try:  # newer torch-tensorrt releases call the example inputs arg_inputs, older ones inputs
            torch_tensorrt.save(engine, str(path), arg_inputs=[example])
        except TypeError:
            torch_tensorrt.save(engine, str(path), inputs=[example])
    loaded = torch.export.load(str(path)).module()

    def run(image: torch.Tensor) -> list[np.ndarray]:
        with torch.no_grad():
            outputs = loaded(image.to(device))
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return [o.float().cpu().numpy() for o in outputs]

    return run
