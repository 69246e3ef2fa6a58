"""Export of the inference networks (ONNX, TorchScript, TensorRT via torch-tensorrt) with numerical parity checks
against PyTorch; the command line is ``python -m priordepth_core.export``."""

from .parity import TOLERANCE, ParityRow, compare_outputs

__all__ = ["TOLERANCE", "ParityRow", "compare_outputs"]
