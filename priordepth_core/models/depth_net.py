"""DepthNet: ResNet encoder + MonoDepth2's skip decoder, sigmoid disparity at several scales.

The decoder follows MonoDepth2 (``networks/depth_decoder.py``): per level a 3x3 conv (reflection padding) + ELU,
nearest 2x upsampling, concatenation with the encoder map of the same stride, a second conv block, and at the output
scales a 3x3 conv + sigmoid. Disparity in [0, 1] maps to depth in [min_depth, max_depth] by :func:`disp_to_depth`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry.validation import check_shape
from .resnet import ResnetEncoder

# MonoDepth2's decoder widths, from full resolution (level 0) to stride 16 (level 4).
DECODER_WIDTHS = (16, 32, 64, 128, 256)
# Both encoder and decoder widths are scaled by this in the lite model.
LITE_WIDTH_MULTIPLIER = 0.5
# Five stride-2 stages: inputs must divide evenly so skips and upsampled maps align.
INPUT_MULTIPLE = 32


def disp_to_depth(disp: torch.Tensor, min_depth: float, max_depth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MonoDepth2's sigmoid-output to depth mapping.

    Args:
        disp: (...) network disparity in [0, 1].
        min_depth, max_depth: depth at ``disp`` = 1 and ``disp`` = 0.

    Returns:
        scaled_disp: (...) disparity in [1 / max_depth, 1 / min_depth].
        depth: (...) ``1 / scaled_disp``, in [min_depth, max_depth].
    """
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1.0 / scaled_disp


class ConvBlock(nn.Module):
    """3x3 convolution with reflection padding, then ELU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.conv(x))


class Conv3x3(nn.Module):
    """3x3 convolution with reflection padding (avoids the dark border zero padding puts in depth maps)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class DepthDecoder(nn.Module):
    """MonoDepth2's decoder: encoder maps -> sigmoid disparity at the requested scales.

    Args:
        num_ch_enc: channels of the five encoder maps (strides 2..32).
        scales: output scales; scale s has stride 2^s (0 is full resolution), each in 0..3.
        widths: decoder widths per level 0..4.
    """

    def __init__(self, num_ch_enc: list[int], scales: tuple[int, ...] = (0, 1, 2, 3),
                 widths: tuple[int, ...] = DECODER_WIDTHS):
        super().__init__()
        self.scales = tuple(scales)
        # Levels finer than the finest requested scale would be dead weight.
        self.levels = tuple(range(4, min(self.scales) - 1, -1))
        self.upconv0 = nn.ModuleList()
        self.upconv1 = nn.ModuleList()
        for level in self.levels:
            in_channels = num_ch_enc[-1] if level == 4 else widths[level + 1]
            self.upconv0.append(ConvBlock(in_channels, widths[level]))
            skip = num_ch_enc[level - 1] if level > 0 else 0
            self.upconv1.append(ConvBlock(widths[level] + skip, widths[level]))
        self.dispconv = nn.ModuleDict({str(s): Conv3x3(widths[s], 1) for s in self.scales})

    def forward(self, features: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        """features: five (B, C_i, H/2^(i+1), W/2^(i+1)) maps -> {scale: (B, 1, H/2^s, W/2^s) disparity in [0, 1]}."""
        disps = {}
        x = features[-1]
        for i, level in enumerate(self.levels):
            x = F.interpolate(self.upconv0[i](x), scale_factor=2.0, mode="nearest")  # (B, w, H/2^level, W/2^level)
            if level > 0:
                x = torch.cat([x, features[level - 1]], dim=1)
            x = self.upconv1[i](x)
            if level in self.scales:
                disps[level] = torch.sigmoid(self.dispconv[str(level)](x))
        return disps


class DepthNet(nn.Module):
    """Monocular depth: image -> multi-scale disparity and depth.

    Args:
        num_layers: ResNet depth of the encoder (18, 34, 50).
        lite: halve every encoder and decoder width (a real-time CPU model; no ImageNet weights exist for it).
        min_depth, max_depth: depth range the sigmoid disparity maps to.
        scales: output scales, a subset of (0, 1, 2, 3); scale s has stride 2^s.
        pretrained_path: optional local torchvision ImageNet ResNet ``state_dict`` for the encoder.

    Example:
        >>> net = DepthNet(lite=True, scales=(0, 1))
        >>> out = net(torch.rand(2, 3, 64, 96))
        >>> out["depth"][1].shape
        torch.Size([2, 1, 32, 48])
    """

    def __init__(self, num_layers: int = 18, lite: bool = False, min_depth: float = 0.1, max_depth: float = 100.0,
                 scales: tuple[int, ...] = (0, 1, 2, 3), pretrained_path: str | Path | None = None):
        super().__init__()
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}")
        scales = tuple(sorted(set(int(s) for s in scales)))
        if not scales or any(s not in (0, 1, 2, 3) for s in scales):
            raise ValueError(f"scales must be a non-empty subset of (0, 1, 2, 3), got {scales}")
        multiplier = LITE_WIDTH_MULTIPLIER if lite else 1.0
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.scales = scales
        self.encoder = ResnetEncoder(num_layers, width_multiplier=multiplier, pretrained_path=pretrained_path)
        widths = tuple(max(1, round(w * multiplier)) for w in DECODER_WIDTHS)
        self.decoder = DepthDecoder(self.encoder.num_ch_enc, scales, widths)

    def forward(self, image: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Predict disparity and depth.

        Args:
            image: (B, 3, H, W) in [0, 1]; H and W multiples of 32.

        Returns:
            ``disp``: list over ``scales`` (ascending) of (B, 1, H/2^s, W/2^s) sigmoid disparity in [0, 1];
            ``depth``: the same shapes, in [min_depth, max_depth] (see :func:`disp_to_depth`).

        Raises:
            ValueError: wrong shape or dtype, or H or W not a multiple of 32.
        """
        dims = check_shape(image, "image", ("B", 3, "H", "W"))
        if dims["H"] % INPUT_MULTIPLE or dims["W"] % INPUT_MULTIPLE:
            raise ValueError(f"image height and width must be multiples of {INPUT_MULTIPLE}, got "
                             f"{dims['H']}x{dims['W']}")
        disps = self.decoder(self.encoder(image))
        disp = [disps[s] for s in self.scales]
        depth = [disp_to_depth(d, self.min_depth, self.max_depth)[1] for d in disp]
        return {"disp": disp, "depth": depth}
