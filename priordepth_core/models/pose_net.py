"""PoseNet: MonoDepth2's pose regression baseline (a ResNet on two stacked frames + a small conv decoder).

Kept for comparison with the keypoint-based pose solvers. Follows MonoDepth2's ``separate_resnet`` pose model
(``networks/pose_decoder.py`` and ``trainer.py::predict_poses``), including its frame-order convention.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..geometry.se3 import invert_transform, pose_vector_to_transform
from ..geometry.validation import check_shape
from .resnet import ResnetEncoder

# MonoDepth2 scales the decoder output so that an untrained network starts near the identity motion.
POSE_OUTPUT_SCALE = 0.01
POSE_DECODER_WIDTH = 256


class PoseDecoder(nn.Module):
    """1x1 squeeze to 256 + ReLU, 3x3 256 + ReLU, 3x3 256 + ReLU, 1x1 to 6, mean over the map, times 0.01."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, POSE_DECODER_WIDTH, 1)
        self.pose0 = nn.Conv2d(POSE_DECODER_WIDTH, POSE_DECODER_WIDTH, 3, padding=1)
        self.pose1 = nn.Conv2d(POSE_DECODER_WIDTH, POSE_DECODER_WIDTH, 3, padding=1)
        self.pose2 = nn.Conv2d(POSE_DECODER_WIDTH, 6, 1)
        self.relu = nn.ReLU()

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features: (B, C, h, w) deepest encoder map -> axis-angle (B, 3), translation (B, 3)."""
        x = self.relu(self.squeeze(features))
        x = self.relu(self.pose0(x))
        x = self.relu(self.pose1(x))
        out = POSE_OUTPUT_SCALE * self.pose2(x).mean(dim=(2, 3))  # (B, 6)
        return out[:, :3], out[:, 3:]


class PoseNet(nn.Module):
    """Relative pose of two frames from their stacked images.

    Args:
        num_layers: ResNet depth of the encoder (18, 34, 50).
        pretrained_path: optional local torchvision ImageNet ResNet ``state_dict``; ``conv1`` is repeated over the
            two frames and halved (MonoDepth2).

    Example:
        >>> net = PoseNet()
        >>> T = net.T_context_target(torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96), context_offset=-1)
        >>> T.shape
        torch.Size([1, 4, 4])
    """

    def __init__(self, num_layers: int = 18, pretrained_path: str | Path | None = None):
        super().__init__()
        self.encoder = ResnetEncoder(num_layers, num_input_images=2, pretrained_path=pretrained_path)
        self.decoder = PoseDecoder(self.encoder.num_ch_enc[-1])

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Regress the pose parameters of an ordered pair.

        Args:
            image_a, image_b: (B, 3, H, W) in [0, 1], the earlier frame first (MonoDepth2's input order).

        Returns:
            axis_angle: (B, 3) and translation: (B, 3); ``pose_vector_to_transform`` of them maps points of the
            frame of ``image_a`` into the frame of ``image_b`` when ``image_a`` is the target (see
            :meth:`T_context_target`).
        """
        dims = check_shape(image_a, "image_a", ("B", 3, "H", "W"))
        check_shape(image_b, "image_b", ("B", 3, "H", "W"), dims)
        features = self.encoder(torch.cat([image_a, image_b], dim=1))
        return self.decoder(features[-1])

    def T_context_target(self, target: torch.Tensor, context: torch.Tensor, context_offset: int) -> torch.Tensor:
        """``T_context_target`` (B, 4, 4), mapping target-frame points into the context frame, as MonoDepth2.

        MonoDepth2 always feeds the temporally earlier frame first: for a context before the target
        (``context_offset < 0``) the input is (context, target) and the regressed transform is inverted; for a
        context after it the input is (target, context) and the transform is used as is.

        Args:
            target, context: (B, 3, H, W) in [0, 1].
            context_offset: frame index of the context relative to the target (e.g. -1 or +1); not 0.

        Raises:
            ValueError: ``context_offset`` is 0, or wrong image shapes.
        """
        if context_offset == 0:
            raise ValueError("context_offset must be non-zero (the context is another frame than the target)")
        if context_offset < 0:
            axis_angle, translation = self(context, target)
            return invert_transform(pose_vector_to_transform(axis_angle, translation))
        axis_angle, translation = self(target, context)
        return pose_vector_to_transform(axis_angle, translation)
