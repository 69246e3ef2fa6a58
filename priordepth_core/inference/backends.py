"""Interchangeable network runtimes behind one small interface: PyTorch, ONNX Runtime, OpenVINO, TensorRT
(torch-tensorrt).

A backend runs the two networks of an :class:`~priordepth_core.inference.model_file.InferenceModel` at one fixed
input size and returns torch tensors on the CPU, so that everything after the networks (keypoint selection,
matching, the pose solve) is the same code whatever the runtime.

ONNX graphs are exported once per (weights, input size, PyTorch version) and kept in ``$PRIORDEPTH_CACHE/onnx``
(default ``~/.cache/priordepth/onnx``): the dynamo exporter takes several seconds, a cached graph loads in
milliseconds.
"""

from __future__ import annotations

import abc
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import resolve_precision
from .model_file import InferenceModel
from .networks import DEPTH_OUTPUTS, IMAGE_NAME, KEYPOINT_OUTPUTS, DepthGraph, KeypointGraph
from .onnx_graph import export_onnx_model
from .quantize import CALIBRATION_PHOTOS, QUANTISATION_RECIPE, ParityResult, int8_parity, photo_batches, quantize_onnx

log = logging.getLogger(__name__)


class BackendUnavailableError(RuntimeError):
    """The requested runtime cannot run on this machine (no CUDA, a missing package); the message says what."""


class NetworkBackend(abc.ABC):
    """Runs DepthNet and KeypointNet on (1, 3, H, W) float32 images in [0, 1] at the size given at construction."""

    name: str = ""

    def __init__(self, input_size: tuple[int, int]):
        self.input_size = tuple(input_size)

    @abc.abstractmethod
    def depth(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) -> (1, 1, H, W) float32 CPU depth in the network's scale."""

    @abc.abstractmethod
    def keypoints(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """(1, 3, H, W) -> ``score`` (1, 1, H/8, W/8), ``coord`` (1, 2, H/8, W/8), ``desc`` (1, D, H/4, W/4), CPU."""


class TorchBackend(NetworkBackend):
    """Eager PyTorch on the CPU or CUDA (fp16 autocast on CUDA with ``precision="fp16"``)."""

    name = "torch"

    def __init__(self, model: InferenceModel, input_size: tuple[int, int], device: str = "cpu",
                 precision: str = "fp32"):
        super().__init__(input_size)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU")
        self.depth_graph = DepthGraph(model.depth_net).to(self.device).eval()
        self.keypoint_graph = KeypointGraph(model.keypoint_net).to(self.device).eval()
        self.autocast = self.device.type == "cuda" and precision == "fp16"

    def _run(self, graph: nn.Module, image: torch.Tensor):
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.autocast):
            return graph(image.to(self.device, non_blocking=True))

    def depth(self, image: torch.Tensor) -> torch.Tensor:
        return self._run(self.depth_graph, image).float().cpu()

    def keypoints(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        score, coord, desc = self._run(self.keypoint_graph, image)
        return {"score": score.float().cpu(), "coord": coord.float().cpu(), "desc": desc.float().cpu()}


def onnx_cache_dir() -> Path:
    """``$PRIORDEPTH_CACHE/onnx`` or ``~/.cache/priordepth/onnx``."""
    root = os.environ.get("PRIORDEPTH_CACHE") or Path.home() / ".cache" / "priordepth"
    return Path(root) / "onnx"


def onnx_graph_bytes(graph: nn.Module, input_size: tuple[int, int], output_names: tuple[str, ...],
                     cache_key: str | None) -> bytes:
    """The ONNX model of ``graph`` at ``input_size``; read from / written to the cache when ``cache_key`` is set."""
    path = None
    if cache_key is not None:
        path = onnx_cache_dir() / f"{cache_key}-{input_size[0]}x{input_size[1]}-torch{torch.__version__}.onnx"
        if path.is_file():
            return path.read_bytes()
    log.info("exporting %s to ONNX at %dx%d (once; cached in %s)", type(graph).__name__, input_size[1],
             input_size[0], onnx_cache_dir() if path is not None else "memory only")
    example = torch.rand(1, 3, *input_size)
    data = export_onnx_model(graph.eval(), example, IMAGE_NAME, output_names)
    if path is not None:
        _write_cache(path, data)
    return data


def ort_session_options(num_threads: int = 0):
    """ONNX Runtime options for single-image latency: all graph optimisations, sequential execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if num_threads > 0:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return options


def ort_providers(device: str) -> list[str]:
    """Execution providers for ``device``; raises BackendUnavailableError when CUDA is asked for but missing."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailableError("backend 'onnxruntime' needs the onnxruntime package "
                                      "(pip install 'priordepth_ros[export]')") from exc
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailableError(f"device {device!r} with onnxruntime needs onnxruntime-gpu and a CUDA GPU; "
                                          f"available providers: {ort.get_available_providers()}")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def int8_graph_bytes(fp32_model: bytes, input_size: tuple[int, int], cache_key: str | None,
                     quantised_convs: int | None = None) -> bytes:
    """The Conv-only INT8 QDQ model of ``fp32_model`` (quantize.py; only its first ``quantised_convs`` Convs when
    given); cached like the FP32 graphs."""
    path = None
    if cache_key is not None:
        path = onnx_cache_dir() / (f"{cache_key}-{input_size[0]}x{input_size[1]}-torch{torch.__version__}-"
                                   f"{QUANTISATION_RECIPE}.onnx")
        if path.is_file():
            return path.read_bytes()
    log.info("quantising a graph to INT8 at %dx%d (once; cached in %s)", input_size[1], input_size[0],
             onnx_cache_dir() if path is not None else "memory only")
    data = quantize_onnx(fp32_model, photo_batches(CALIBRATION_PHOTOS, input_size), quantised_convs)
    if path is not None:
        _write_cache(path, data)
    return data


def _write_cache(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError:  # a read-only cache only costs the next start the export time
        pass


def _count_convs(module: nn.Module) -> int:
    return sum(isinstance(layer, nn.Conv2d) for layer in module.modules())


class OnnxGraphBackend(NetworkBackend):
    """A runtime of the two exported ONNX graphs, FP32 or INT8 (each INT8 graph gated by its parity with FP32).

    Subclasses say how a graph becomes a runnable session (:meth:`_compile`). After construction ``precisions``
    names what each graph runs in and ``parity`` holds the INT8 parity results (quantize.ParityResult).
    """

    supported_precisions: tuple[str, ...] = ("fp32", "int8", "int8_keypoints")

    def __init__(self, model: InferenceModel, input_size: tuple[int, int], precision: str, use_cache: bool):
        super().__init__(input_size)
        if precision not in self.supported_precisions:
            raise ValueError(f"backend {self.name!r} runs {' or '.join(self.supported_precisions)}, "
                             f"not precision {precision!r}")
        key = model.fingerprint()[:20] if use_cache else None
        self.runners: dict[str, Callable[[np.ndarray], list[np.ndarray]]] = {}
        self.precisions: dict[str, str] = {}
        self.parity: dict[str, ParityResult] = {}
        for name, graph, outputs in (("depth", DepthGraph(model.depth_net), DEPTH_OUTPUTS),
                                     ("keypoints", KeypointGraph(model.keypoint_net), KEYPOINT_OUTPUTS)):
            fp32 = onnx_graph_bytes(graph, self.input_size, outputs, None if key is None else f"{key}-{name}")
            fp32_runner = self._compile(fp32)
            self.runners[name], self.precisions[name] = fp32_runner, "fp32"
            if precision == "fp32" or (precision == "int8_keypoints" and name != "keypoints"):
                continue
            # DepthNet: the encoder only (quantize.py says why).
            quantised_convs = _count_convs(model.depth_net.encoder) if name == "depth" else None
            int8_runner = self._compile(int8_graph_bytes(fp32, self.input_size,
                                                         None if key is None else f"{key}-{name}", quantised_convs))
            parity = int8_parity(name, fp32_runner, int8_runner, self.input_size)
            self.parity[name] = parity
            if parity.passed:
                self.runners[name], self.precisions[name] = int8_runner, "int8"
            else:
                log.warning("%s: the INT8 %s graph fails the parity check against FP32 (%s); running it in FP32",
                            self.name, name, parity.describe())

    @abc.abstractmethod
    def _compile(self, onnx_model: bytes) -> Callable[[np.ndarray], list[np.ndarray]]:
        """A function running ``onnx_model`` on a (1, 3, H, W) float32 array, returning its outputs in order."""

    def _run(self, name: str, image: torch.Tensor) -> list[np.ndarray]:
        return self.runners[name](np.ascontiguousarray(image.detach().cpu().numpy(), dtype=np.float32))

    def depth(self, image: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._run("depth", image)[0])

    def keypoints(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {key: torch.from_numpy(value) for key, value in zip(KEYPOINT_OUTPUTS, self._run("keypoints", image))}

    def describe(self) -> str:
        """E.g. "depth int8, keypoints int8" (what each graph runs in)."""
        return ", ".join(f"{name} {precision}" for name, precision in self.precisions.items())


class OnnxRuntimeBackend(OnnxGraphBackend):
    """ONNX Runtime sessions of the two graphs (exported on first use, then cached); INT8 on the CPU."""

    name = "onnxruntime"

    def __init__(self, model: InferenceModel, input_size: tuple[int, int], device: str = "cpu",
                 num_threads: int = 0, use_cache: bool = True, precision: str = "fp32"):
        self.providers = ort_providers(device)
        self.options = ort_session_options(num_threads)
        if precision.startswith("int8") and device != "cpu":
            raise ValueError("onnxruntime INT8 runs on the CPU; use precision fp32 with device cuda")
        super().__init__(model, input_size, precision, use_cache)

    def _compile(self, onnx_model: bytes):
        import onnxruntime as ort

        session = ort.InferenceSession(onnx_model, self.options, providers=self.providers)
        return lambda array: session.run(None, {IMAGE_NAME: array})


_OPENVINO_CORE = None


def _openvino_core(openvino):
    """One ``openvino.Core`` per process, shared by every backend: each Core loads its own CPU plugin and thread pool,
    and creating and dropping many of them in one process (a test run builds dozens of pipelines) ended in a
    segmentation fault."""
    global _OPENVINO_CORE
    if _OPENVINO_CORE is None:
        _OPENVINO_CORE = openvino.Core()
    return _OPENVINO_CORE


class OpenVinoBackend(OnnxGraphBackend):
    """OpenVINO on the CPU: the same ONNX graphs, compiled for latency (FP32 kernels, or INT8 ones for the QDQ
    graph). The fastest measured runtime here (benchmarks/pipeline.py, docs/odometry.md)."""

    name = "openvino"

    def __init__(self, model: InferenceModel, input_size: tuple[int, int], device: str = "cpu",
                 num_threads: int = 0, use_cache: bool = True, precision: str = "int8"):
        if device != "cpu":
            raise BackendUnavailableError(f"backend 'openvino' runs on the CPU here, got device={device!r}; "
                                          "use tensorrt or onnxruntime on CUDA")
        try:
            import openvino
        except ImportError as exc:
            raise BackendUnavailableError("backend 'openvino' needs the openvino package "
                                          "(pip install openvino)") from exc
        self.core = _openvino_core(openvino)
        # The compiled model runs single requests; f32 inference precision keeps FP32 graphs in FP32 on CPUs with
        # bf16 units (OpenVINO would otherwise lower them to bf16 and fail the FP32 reference).
        self.compile_config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if num_threads > 0:
            self.compile_config["INFERENCE_NUM_THREADS"] = num_threads
        super().__init__(model, input_size, precision, use_cache)

    def _compile(self, onnx_model: bytes):
        compiled = self.core.compile_model(self.core.read_model(onnx_model), "CPU", self.compile_config)
        request = compiled.create_infer_request()

        def run(array: np.ndarray) -> list[np.ndarray]:
            request.infer({0: array})
            # Copies: the request reuses its output buffers on the next call.
            return [np.array(request.get_output_tensor(i).data) for i in range(len(compiled.outputs))]

        return run


def require_tensorrt(device: str):
    """Import torch_tensorrt for ``device``, or raise BackendUnavailableError saying what is missing."""
    if not device.startswith("cuda"):
        raise BackendUnavailableError(f"backend 'tensorrt' runs on a CUDA device, got device={device!r}")
    if not torch.cuda.is_available():
        raise BackendUnavailableError("backend 'tensorrt' needs a CUDA GPU, but PyTorch sees none on this machine "
                                      f"(torch {torch.__version__}); use backend 'onnxruntime' or 'torch' on the CPU")
    try:
        import torch_tensorrt
    except ImportError as exc:
        raise BackendUnavailableError("backend 'tensorrt' needs torch-tensorrt matching this PyTorch "
                                      f"({torch.__version__}): pip install torch-tensorrt") from exc
    return torch_tensorrt


def compile_tensorrt(graph: nn.Module, input_size: tuple[int, int], device: str, precision: str) -> nn.Module:
    """A TensorRT engine of ``graph`` at a fixed (1, 3, H, W) input through torch-tensorrt's dynamo frontend."""
    torch_tensorrt = require_tensorrt(device)
    dtype = {"fp16": torch.float16, "fp32": torch.float32}[precision]
    module = graph.to(device).eval()
    example = torch.rand(1, 3, *input_size, device=device)
    with torch.no_grad():
        return torch_tensorrt.compile(module, ir="dynamo", inputs=[example], enabled_precisions={dtype})


class TensorRTBackend(NetworkBackend):
    """TensorRT engines built by torch-tensorrt (CUDA only), FP16 or FP32."""

    name = "tensorrt"

    def __init__(self, model: InferenceModel, input_size: tuple[int, int], device: str = "cuda",
                 precision: str = "fp16"):
        super().__init__(input_size)
        require_tensorrt(device)
        self.device = torch.device(device)
        self.depth_engine = compile_tensorrt(DepthGraph(model.depth_net), self.input_size, device, precision)
        self.keypoint_engine = compile_tensorrt(KeypointGraph(model.keypoint_net), self.input_size, device, precision)

    def depth(self, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.depth_engine(image.to(self.device)).float().cpu()

    def keypoints(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            outputs = self.keypoint_engine(image.to(self.device))
        return {key: value.float().cpu() for key, value in zip(KEYPOINT_OUTPUTS, outputs)}


def create_backend(name: str, model: InferenceModel, input_size: tuple[int, int], device: str = "cpu",
                   num_threads: int = 0, precision: str = "auto", use_cache: bool = True) -> NetworkBackend:
    """Build backend ``name`` ("torch", "onnxruntime", "openvino", "tensorrt") for ``model`` at ``input_size``.

    Raises:
        ValueError: unknown backend name, or a precision it does not run.
        BackendUnavailableError: the runtime cannot run here (no CUDA, a missing package).
    """
    precision = resolve_precision(name, precision, device)
    if name == "torch":
        return TorchBackend(model, input_size, device, precision)
    if name == "onnxruntime":
        return OnnxRuntimeBackend(model, input_size, device, num_threads, use_cache, precision)
    if name == "openvino":
        return OpenVinoBackend(model, input_size, device, num_threads, use_cache, precision)
    return TensorRTBackend(model, input_size, device, precision)
