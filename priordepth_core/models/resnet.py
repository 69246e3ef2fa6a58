"""ResNet encoder (He et al. 2016) with torchvision's module names, for DepthNet and PoseNet.

Written here because torchvision is not a dependency. Parameter names match torchvision's ``resnet{18,34,50}``
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ...), so an ImageNet state dict saved by
torchvision loads with :meth:`ResnetEncoder.load_pretrained` from a local file. The classifier (``fc``) is dropped.

Two MonoDepth2 extensions (``networks/resnet_encoder.py``): ``num_input_images`` stacks several RGB frames along the
channels (PoseNet), and the input is normalised inside the encoder as ``(x - 0.45) / 0.225``. A ``width_multiplier``
scales every channel width (0.5 gives a ResNet-18 with widths 32/32/64/128/256, the ``lite`` real-time model).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..geometry.validation import check_shape

# MonoDepth2's input normalisation (a single mean/std for all channels).
INPUT_MEAN = 0.45
INPUT_STD = 0.225

# Standard torchvision widths: stem and the four stages, before the block expansion.
BASE_WIDTHS = (64, 64, 128, 256, 512)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, as torchvision's v1.5), 1x1 expand by 4, with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# Depth -> (block type, blocks per stage), as torchvision.
RESNET_SPECS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResnetEncoder(nn.Module):
    """ResNet feature pyramid: five maps at strides 2, 4, 8, 16 and 32.

    Args:
        num_layers: 18, 34 or 50.
        num_input_images: RGB frames stacked along the channels (``conv1`` takes ``3 * num_input_images`` channels).
        width_multiplier: scales every channel width; 1.0 is torchvision's ResNet, 0.5 the ``lite`` model.
        pretrained_path: optional local file holding a torchvision-format ImageNet ``state_dict``; loaded with
            :meth:`load_pretrained`.

    Attributes:
        num_ch_enc: channels of the five returned maps, e.g. ``[64, 64, 128, 256, 512]`` for ResNet-18.

    Example:
        >>> encoder = ResnetEncoder(18)
        >>> [f.shape[1] for f in encoder(torch.rand(1, 3, 64, 96))]
        [64, 64, 128, 256, 512]
    """

    def __init__(self, num_layers: int = 18, num_input_images: int = 1, width_multiplier: float = 1.0,
                 pretrained_path: str | Path | None = None):
        super().__init__()
        if num_layers not in RESNET_SPECS:
            raise ValueError(f"num_layers must be one of {sorted(RESNET_SPECS)}, got {num_layers}")
        if num_input_images < 1:
            raise ValueError(f"num_input_images must be at least 1, got {num_input_images}")
        if width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be positive, got {width_multiplier}")
        block, layers = RESNET_SPECS[num_layers]
        widths = [max(1, round(w * width_multiplier)) for w in BASE_WIDTHS]
        self.num_layers = num_layers
        self.num_input_images = num_input_images
        self.width_multiplier = width_multiplier

        self.conv1 = nn.Conv2d(3 * num_input_images, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = widths[0]
        stages = []
        for index, (width, blocks) in enumerate(zip(widths[1:], layers)):
            stage, in_channels = self._make_stage(block, in_channels, width, blocks, stride=1 if index == 0 else 2)
            stages.append(stage)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_ch_enc = [widths[0]] + [w * block.expansion for w in widths[1:]]

        for module in self.modules():  # torchvision's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if pretrained_path:
            self.load_pretrained(pretrained_path)

    @staticmethod
    def _make_stage(block: type[nn.Module], in_channels: int, width: int, blocks: int,
                    stride: int) -> tuple[nn.Sequential, int]:
        out_channels = width * block.expansion
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(out_channels))
        modules = [block(in_channels, width, stride, downsample)]
        modules += [block(out_channels, width) for _ in range(1, blocks)]
        return nn.Sequential(*modules), out_channels

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Encode images.

        Args:
            images: (B, 3 * num_input_images, H, W) in [0, 1].

        Returns:
            Five maps ``(B, num_ch_enc[i], H / 2^(i+1), W / 2^(i+1))`` (sizes rounded up for odd inputs).
        """
        check_shape(images, "images", ("B", 3 * self.num_input_images, "H", "W"))
        x = (images - INPUT_MEAN) / INPUT_STD
        f0 = self.relu(self.bn1(self.conv1(x)))  # (B, C0, H/2, W/2)
        f1 = self.layer1(self.maxpool(f0))  # (B, C1, H/4, W/4)
        f2 = self.layer2(f1)  # (B, C2, H/8, W/8)
        f3 = self.layer3(f2)  # (B, C3, H/16, W/16)
        f4 = self.layer4(f3)  # (B, C4, H/32, W/32)
        return [f0, f1, f2, f3, f4]

    def adapt_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a torchvision-format ResNet ``state_dict`` onto this encoder.

        ``fc.*`` is dropped; for ``num_input_images > 1`` the ``conv1`` weight is repeated over the stacked images
        and divided by their number (MonoDepth2), so stacked identical frames give the single-image response.

        Raises:
            ValueError: keys missing or unexpected, or shapes that differ (e.g. another depth or width).
        """
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"a state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}")
        loaded = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        if "conv1.weight" in loaded and self.num_input_images > 1:
            weight = loaded["conv1.weight"]
            loaded["conv1.weight"] = weight.repeat(1, self.num_input_images, 1, 1) / self.num_input_images
        own = self.state_dict()
        # torchvision's ImageNet files predate BatchNorm's num_batches_tracked counter; it carries no weights.
        missing = sorted(k for k in own if k not in loaded and not k.endswith("num_batches_tracked"))
        unexpected = sorted(k for k in loaded if k not in own)
        mismatched = sorted(f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                            for k, v in loaded.items() if k in own and tuple(v.shape) != tuple(own[k].shape))
        problems = []
        for label, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if names:
                shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
                problems.append(f"{label}: {shown}")
        if problems:
            raise ValueError(f"state_dict does not fit ResNet-{self.num_layers} (width x{self.width_multiplier}, "
                             f"{self.num_input_images} input image(s)); " + "; ".join(problems))
        return loaded

    def load_pretrained(self, path: str | Path) -> None:
        """Load a torchvision-format ImageNet ``state_dict`` from a local file (``torch.load(weights_only=True)``).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file does not hold a state dict that fits this encoder (see :meth:`adapt_state_dict`).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained ResNet weights not found: {path}")
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # torch's own message advises unsafe loading: it is never passed on
            raise ValueError(f"pretrained ResNet weights {path} cannot be read (truncated, damaged or another format); "
                             f"expected a torchvision ResNet state_dict written by torch.save") from None
        self.load_state_dict(self.adapt_state_dict(state_dict), strict=False)
