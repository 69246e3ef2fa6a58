"""The inference networks as export-friendly modules: tensors in, a fixed tuple of tensors out.

Dict outputs and multi-scale lists do not survive tracing into ONNX / TorchScript / TensorRT graphs; these thin
wrappers give every runtime the same three graphs (depth, keypoints, and both at once for deployment).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models import DepthNet, KeypointNet

# Names of the graph inputs and outputs (ONNX input/output names, parity reports).
IMAGE_NAME = "image"
DEPTH_OUTPUTS = ("depth",)
KEYPOINT_OUTPUTS = ("score", "coord", "desc")
ALL_OUTPUTS = DEPTH_OUTPUTS + KEYPOINT_OUTPUTS


class DepthGraph(nn.Module):
    """(B, 3, H, W) image in [0, 1] -> (B, 1, H, W) depth in the network's scale."""

    def __init__(self, depth_net: DepthNet):
        super().__init__()
        self.depth_net = depth_net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.depth_net(image)["depth"][0]


class KeypointGraph(nn.Module):
    """(B, 3, H, W) image -> score (B, 1, H/8, W/8), coord (B, 2, H/8, W/8), desc (B, D, H/4, W/4)."""

    def __init__(self, keypoint_net: KeypointNet):
        super().__init__()
        self.keypoint_net = keypoint_net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.keypoint_net(image)
        return out["score"], out["coord"], out["desc"]


class PriorDepthGraph(nn.Module):
    """Both networks in one graph, for deployment: image -> (depth, score, coord, desc)."""

    def __init__(self, depth_net: DepthNet, keypoint_net: KeypointNet):
        super().__init__()
        self.depth = DepthGraph(depth_net)
        self.keypoints = KeypointGraph(keypoint_net)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return (self.depth(image), *self.keypoints(image))
