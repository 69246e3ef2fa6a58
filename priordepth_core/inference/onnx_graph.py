"""Trace a module into an ONNX graph with PyTorch's (dynamo) exporter, fixed or dynamic in height and width.

The ONNX Runtime backend builds its graphs with it at start-up, and ``python -m priordepth_core.export`` writes them
to files: it lives here, below both.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from ..models.depth_net import INPUT_MULTIPLE

ONNX_OPSET = 18
# Dynamic sizes are multiples of 32 (DepthNet's strides) up to this many blocks a side (8192 px).
MAX_SIZE_BLOCKS = 256


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter logs and warns about things irrelevant here (torchvision ops, pytree deprecations)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        logger.setLevel(level)


def export_onnx_model(module: nn.Module, example: torch.Tensor, input_name: str, output_names: Sequence[str],
                      dynamic: bool = False) -> bytes:
    """Serialised ONNX model of ``module(example)``.

    Args:
        module: a module in eval mode mapping one (B, 3, H, W) tensor to a tensor or a tuple of tensors.
        example: (1, 3, H, W) float32 example input (its size is the fixed size when not ``dynamic``).
        input_name: the graph input's name.
        output_names: the graph outputs' names, in order.
        dynamic: height and width become symbolic (any multiples of 32); the batch stays 1.

    Returns:
        the ``ModelProto`` bytes (weights embedded).

    Raises:
        RuntimeError: the exporter failed (its message is kept).
    """
    dynamic_shapes = None
    if dynamic:
        blocks_h = torch.export.Dim("height_blocks", min=1, max=MAX_SIZE_BLOCKS)
        blocks_w = torch.export.Dim("width_blocks", min=1, max=MAX_SIZE_BLOCKS)
        dynamic_shapes = {input_name: {2: INPUT_MULTIPLE * blocks_h, 3: INPUT_MULTIPLE * blocks_w}}

    class _Named(nn.Module):
        """Gives the traced forward the argument name that dynamic_shapes refers to."""

        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, image: torch.Tensor):
            return self.inner(image)

    wrapped = _Named(module).eval()
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(wrapped, (example,), None, dynamo=True, verbose=False,
                                        opset_version=ONNX_OPSET, input_names=[input_name],
                                        output_names=list(output_names),
                                        dynamic_shapes={"image": dynamic_shapes[input_name]} if dynamic else None)
    except Exception as exc:  # the exporter raises many types; keep its message
        raise RuntimeError(f"ONNX export failed: {exc}") from exc
    return program.model_proto.SerializeToString()
