"""KeypointNet: KP2D's keypoint detector and descriptor, and the selection of a fixed number of keypoints per image.

After Tang et al., "Neural Outlier Rejection for Self-Supervised Keypoint Learning" (ICLR 2020) and TRI-ML/KP2D
``kp2d/networks/keypoint_net.py``: a VGG-like encoder (four stages of two 3x3 conv + BN + LeakyReLU, three 2x2
max-pools) to cells of 8x8 pixels, and three heads on the cell grid:

- score: sigmoid, zero on the outermost ring of cells (KP2D's border mask);
- location: ``tanh`` offsets from the cell centre, scaled by ``cross_ratio * (cell - 1) / 2`` so a keypoint may leave
  its cell (KP2D's ``do_cross``, ratio 2), converted to absolute pixels and clamped to the image;
- descriptor: a dense map; by default (KP2D's ``do_upsample``) the cell features are lifted to stride 4 by a
  pixel shuffle and concatenated with the stride-4 encoder features, which localises descriptors better than the
  cell grid alone (KP2D's ablation). The map is L2-normalised per pixel.

Differences from KP2D, on purpose: pixel centres at integers with cell centres at ``cell * i + (cell - 1) / 2``
(KP2D's convention too) but maps sampled with ``align_corners=False`` like the rest of the library; the dense
descriptor map is returned in both train and eval mode (KP2D samples it at the keypoints in eval mode only; here
:func:`select_keypoints` does that); BatchNorm keeps PyTorch's default momentum (KP2D passes 0.9, the Keras sense).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry.validation import check_shape
from ..geometry.warp import pixels_to_grid
from .resnet import INPUT_MEAN, INPUT_STD

# Pixels per side of one keypoint cell (three 2x2 max-pools).
KEYPOINT_CELL = 8
# Encoder stage widths (KP2D) and the head width; the lite model halves them.
ENCODER_WIDTHS = (32, 64, 128, 256)
HEAD_WIDTH = 256
# Descriptor heads KeypointNet can build (see :class:`KeypointNet`).
DESCRIPTOR_HEADS = ("kp2d", "light")


def _conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels))


def _pointwise_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))


class LightDescriptorHead(nn.Module):
    """The cheap descriptor head (``descriptor_head="light"``): 1x1 convs plus one depthwise 3x3.

    Same contract as the KP2D head: cell features (B, c4, Hc, Wc) (and, when upsampling, the stride-4 skip
    (B, c3, 2 Hc, 2 Wc)) -> un-normalised descriptors (B, D, Hd, Wd). Layout: 1x1 c4 -> c5 (cell grid); when
    upsampling, 1x1 c5 -> 4 c3 + pixel shuffle to stride 4, concatenated with the skip; a depthwise 3x3 (the only
    spatial context the head adds; the encoder's receptive field is already large) and a 1x1 to c5; a 1x1 to D.
    """

    def __init__(self, c3: int, c4: int, c5: int, descriptor_dim: int, upsample: bool, dropout: float):
        super().__init__()
        self.upsample = upsample
        self.reduce = _pointwise_bn(c4, c5)
        if upsample:
            self.up = nn.Sequential(_pointwise_bn(c5, 4 * c3), nn.PixelShuffle(2))
            mid_in = 2 * c3
        else:
            mid_in = c5
        self.depthwise = nn.Sequential(nn.Conv2d(mid_in, mid_in, 3, padding=1, groups=mid_in, bias=False),
                                       nn.BatchNorm2d(mid_in))
        self.pointwise = _pointwise_bn(mid_in, c5)
        self.out = nn.Conv2d(c5, descriptor_dim, 1)
        self.relu = nn.LeakyReLU(inplace=True)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        feat = self.dropout(self.relu(self.reduce(x)))  # (B, c5, Hc, Wc)
        if self.upsample:
            feat = torch.cat([self.up(feat), skip], dim=1)  # (B, 2 c3, 2 Hc, 2 Wc)
        feat = self.relu(self.pointwise(self.relu(self.depthwise(feat))))  # (B, c5, Hd, Wd)
        return self.out(feat)  # (B, D, Hd, Wd)


class KeypointNet(nn.Module):
    """KP2D keypoint network: image -> dense score, keypoint location and descriptor maps.

    Args:
        descriptor_dim: descriptor length D (KP2D: 256).
        lite: halve every encoder and head width (a real-time CPU model).
        upsample_descriptors: descriptors at stride 4 from upsampled + skip features (KP2D's default); otherwise
            straight from the cell features at stride 8.
        cross_ratio: how far a keypoint may move from its cell centre, in half-cells (KP2D: 2, i.e. up to one cell
            beyond its own).
        dropout: Dropout2d probability in the encoder and heads (KP2D: 0.2); 0 disables.
        descriptor_head: ``"kp2d"`` (default; KP2D's head of 3x3 convs, what the shipped models hold) or
            ``"light"`` (:class:`LightDescriptorHead`: 1x1 convs and one depthwise 3x3). Why: in the lite model at
            640x192 the KP2D head costs 3.1 of the network's 5.3 GMAC (``descriptor_up`` 0.57, ``descriptor_mid``
            and ``descriptor_out`` 1.13 each at stride 4, ``descriptor_in`` 0.28); the light head costs 0.35 GMAC,
            so the whole network 2.5 GMAC (``benchmarks/keypoint_head.py`` measures MACs, latency and match
            accuracy of both; docs/keypoints.md, "Light descriptor head"). The encoder, score and location heads
            are the same in both, so a light net can start from a KP2D net's weights.

    Example:
        >>> net = KeypointNet(descriptor_dim=64, lite=True)
        >>> out = net(torch.rand(1, 3, 64, 96))
        >>> out["score"].shape, out["coord"].shape, out["desc"].shape
        (torch.Size([1, 1, 8, 12]), torch.Size([1, 2, 8, 12]), torch.Size([1, 64, 16, 24]))
    """

    def __init__(self, descriptor_dim: int = 256, lite: bool = False, upsample_descriptors: bool = True,
                 cross_ratio: float = 2.0, dropout: float = 0.2, descriptor_head: str = "kp2d"):
        super().__init__()
        if descriptor_head not in DESCRIPTOR_HEADS:
            raise ValueError(f"unknown descriptor_head {descriptor_head!r}; choose from {', '.join(DESCRIPTOR_HEADS)}")
        if descriptor_dim < 1:
            raise ValueError(f"descriptor_dim must be positive, got {descriptor_dim}")
        if cross_ratio <= 0 or not 0 <= dropout < 1:
            raise ValueError(f"need cross_ratio > 0 and 0 <= dropout < 1, got {cross_ratio}, {dropout}")
        factor = 2 if lite else 1
        c1, c2, c3, c4 = (w // factor for w in ENCODER_WIDTHS)
        c5 = HEAD_WIDTH // factor
        self.cell = KEYPOINT_CELL
        self.descriptor_dim = descriptor_dim
        self.upsample_descriptors = upsample_descriptors
        self.cross_ratio = float(cross_ratio)
        self.descriptor_stride = KEYPOINT_CELL // 2 if upsample_descriptors else KEYPOINT_CELL

        self.conv1a, self.conv1b = _conv_bn(3, c1), _conv_bn(c1, c1)
        self.conv2a, self.conv2b = _conv_bn(c1, c2), _conv_bn(c2, c2)
        self.conv3a, self.conv3b = _conv_bn(c2, c3), _conv_bn(c3, c3)
        self.conv4a, self.conv4b = _conv_bn(c3, c4), _conv_bn(c4, c4)
        self.score_head = nn.Sequential(_conv_bn(c4, c5), nn.LeakyReLU(inplace=True), nn.Dropout2d(dropout),
                                        nn.Conv2d(c5, 1, 3, padding=1))
        self.location_head = nn.Sequential(_conv_bn(c4, c5), nn.LeakyReLU(inplace=True), nn.Dropout2d(dropout),
                                           nn.Conv2d(c5, 2, 3, padding=1))
        self.descriptor_head = descriptor_head
        if descriptor_head == "light":
            self.light_descriptor = LightDescriptorHead(c3, c4, c5, descriptor_dim, upsample_descriptors, dropout)
        else:
            self.descriptor_in = _conv_bn(c4, c5)
            if upsample_descriptors:
                # 4 * c3 channels shuffle into c3 channels at twice the resolution, matching the stride-4 skip.
                self.descriptor_up = nn.Sequential(_conv_bn(c5, 4 * c3), nn.PixelShuffle(2))
                descriptor_in_channels = 2 * c3
            else:
                descriptor_in_channels = c5
            self.descriptor_mid = _conv_bn(descriptor_in_channels, c5)
            self.descriptor_out = nn.Conv2d(c5, descriptor_dim, 3, padding=1)
        self.relu = nn.LeakyReLU(inplace=True)
        self.dropout = nn.Dropout2d(dropout)
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Dense keypoint outputs.

        Args:
            image: (B, 3, H, W) in [0, 1]; H and W multiples of 8. Hc = H / 8, Wc = W / 8.

        Returns:
            ``score``: (B, 1, Hc, Wc) in [0, 1], exactly 0 on the border cells;
            ``coord``: (B, 2, Hc, Wc) keypoint pixel coordinates ``(x, y)``, pixel centres at integers, inside
            [0, W-1] x [0, H-1];
            ``desc``: (B, D, Hd, Wd) unit-norm dense descriptor map covering the image, Hd = H / descriptor_stride
            (stride 4 by default, i.e. (2 Hc, 2 Wc); stride 8 = (Hc, Wc) with ``upsample_descriptors=False``).

        Raises:
            ValueError: wrong shape or dtype, or H or W not a multiple of 8.
        """
        dims = check_shape(image, "image", ("B", 3, "H", "W"))
        H, W = dims["H"], dims["W"]
        if H % self.cell or W % self.cell:
            raise ValueError(f"image height and width must be multiples of {self.cell}, got {H}x{W}")
        x = (image - INPUT_MEAN) / INPUT_STD
        x = self.pool(self.dropout(self.relu(self.conv1b(self.relu(self.conv1a(x))))))  # (B, c1, H/2, W/2)
        x = self.pool(self.dropout(self.relu(self.conv2b(self.relu(self.conv2a(x))))))  # (B, c2, H/4, W/4)
        skip = self.dropout(self.relu(self.conv3b(self.relu(self.conv3a(x)))))  # (B, c3, H/4, W/4)
        x = self.pool(skip)  # (B, c3, H/8, W/8)
        x = self.dropout(self.relu(self.conv4b(self.relu(self.conv4a(x)))))  # (B, c4, Hc, Wc)
        B, _, Hc, Wc = x.shape

        score = torch.sigmoid(self.score_head(x))  # (B, 1, Hc, Wc)
        border = torch.zeros(1, 1, Hc, Wc, dtype=score.dtype, device=score.device)
        border[..., 1:-1, 1:-1] = 1.0  # KP2D: border cells see padding on one side; they never become keypoints
        score = score * border

        half_cell = (self.cell - 1) / 2.0
        offset = torch.tanh(self.location_head(x)) * (self.cross_ratio * half_cell)  # (B, 2, Hc, Wc)
        ys = torch.arange(Hc, dtype=x.dtype, device=x.device) * self.cell + half_cell
        xs = torch.arange(Wc, dtype=x.dtype, device=x.device) * self.cell + half_cell
        centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=0).unsqueeze(0)  # (1, 2, Hc, Wc)
        coord = centres + offset
        upper = torch.tensor([W - 1, H - 1], dtype=x.dtype, device=x.device).view(1, 2, 1, 1)
        coord = torch.minimum(coord.clamp(min=0), upper)

        if self.descriptor_head == "light":
            feat = self.light_descriptor(x, skip)  # (B, D, Hd, Wd)
        else:
            feat = self.dropout(self.relu(self.descriptor_in(x)))  # (B, c5, Hc, Wc)
            if self.upsample_descriptors:
                feat = torch.cat([self.descriptor_up(feat), skip], dim=1)  # (B, 2 c3, H/4, W/4)
            feat = self.descriptor_out(self.relu(self.descriptor_mid(feat)))  # (B, D, Hd, Wd)
        desc = F.normalize(feat, dim=1)
        return {"score": score, "coord": coord, "desc": desc}


def sample_descriptors(desc: torch.Tensor, keypoints: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly sample a dense descriptor map at keypoints and re-normalise.

    Args:
        desc: (B, D, Hd, Wd) descriptor map covering an image of ``image_size``.
        keypoints: (B, K, 2) pixel coordinates ``(x, y)`` in that image.
        image_size: ``(H, W)`` of the image.

    Returns:
        (B, K, D) unit-norm descriptors (differentiable in ``desc`` and ``keypoints``).
    """
    dims = check_shape(desc, "desc", ("B", "D", "Hd", "Wd"))
    check_shape(keypoints, "keypoints", ("B", "K", 2), dims)
    grid = pixels_to_grid(keypoints.to(desc.dtype), *image_size).unsqueeze(1)  # (B, 1, K, 2)
    sampled = F.grid_sample(desc, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (B, D, 1, K)
    return F.normalize(sampled[:, :, 0].transpose(1, 2), dim=-1)


def select_keypoints(outputs: dict[str, torch.Tensor], top_k: int = 1000, nms_radius: int = 0,
                     score_threshold: float = 0.0, cell: int = KEYPOINT_CELL) -> dict[str, torch.Tensor]:
    """The ``top_k`` best keypoints of each image, padded to a fixed count so the result stays batched.

    A cell is a candidate if its score exceeds ``score_threshold`` and, when ``nms_radius > 0``, it is the maximum
    of the ``(2 r + 1)^2`` cells around it (max-pool NMS on the cell grid; equal neighbours both survive). The
    candidates are sorted by score; slots beyond the number of candidates have ``valid`` False, score 0, keypoint
    (0, 0) and a zero descriptor. The choice of cells is discrete; the gathered scores, coordinates and sampled
    descriptors keep their gradients.

    Args:
        outputs: :class:`KeypointNet` outputs ``score`` (B, 1, Hc, Wc), ``coord`` (B, 2, Hc, Wc), ``desc``
            (B, D, Hd, Wd) covering the image of size (Hc * cell, Wc * cell).
        top_k: K, keypoints per image.
        nms_radius: suppression radius in cells; 0 keeps every cell (KP2D).
        score_threshold: minimum score (exclusive); 0 drops the zero-score border cells.
        cell: KeypointNet's cell size in pixels.

    Returns:
        ``keypoints`` (B, K, 2) pixel ``(x, y)``, ``scores`` (B, K), ``descriptors`` (B, K, D) unit-norm (zero where
        invalid), ``valid`` (B, K) bool, sorted by decreasing score.
    """
    if not isinstance(outputs, dict) or not {"score", "coord", "desc"} <= outputs.keys():
        raise ValueError("outputs must be a dict with 'score', 'coord' and 'desc'")
    score, coord, desc = outputs["score"], outputs["coord"], outputs["desc"]
    dims = check_shape(score, "outputs['score']", ("B", 1, "Hc", "Wc"))
    check_shape(coord, "outputs['coord']", ("B", 2, "Hc", "Wc"), dims)
    check_shape(desc, "outputs['desc']", ("B", "D", "Hd", "Wd"), dims)
    if top_k < 1 or nms_radius < 0:
        raise ValueError(f"need top_k >= 1 and nms_radius >= 0, got top_k={top_k}, nms_radius={nms_radius}")
    B, Hc, Wc = dims["B"], dims["Hc"], dims["Wc"]

    candidate = score > score_threshold  # (B, 1, Hc, Wc)
    if nms_radius > 0:
        local_max = F.max_pool2d(score, kernel_size=2 * nms_radius + 1, stride=1, padding=nms_radius)
        candidate = candidate & (score >= local_max)
    flat_score = score.flatten(1)  # (B, N)
    flat_candidate = candidate.flatten(1)  # (B, N)
    ranking = torch.where(flat_candidate, flat_score.detach(), torch.full_like(flat_score, -1.0))
    k = min(top_k, Hc * Wc)
    order = torch.topk(ranking, k, dim=1).indices  # (B, k)
    valid = torch.gather(flat_candidate, 1, order)  # (B, k)
    scores = torch.gather(flat_score, 1, order)  # (B, k)
    keypoints = torch.gather(coord.flatten(2), 2, order.unsqueeze(1).expand(B, 2, k)).transpose(1, 2)  # (B, k, 2)
    descriptors = sample_descriptors(desc, keypoints, (Hc * cell, Wc * cell))  # (B, k, D)
    if k < top_k:  # fewer cells than requested: pad the fixed-size slots
        pad = top_k - k
        valid = F.pad(valid, (0, pad), value=False)
        scores = F.pad(scores, (0, pad))
        keypoints = F.pad(keypoints, (0, 0, 0, pad))
        descriptors = F.pad(descriptors, (0, 0, 0, pad))
    zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
    return {
        "keypoints": torch.where(valid.unsqueeze(-1), keypoints, zero),
        "scores": torch.where(valid, scores, zero),
        "descriptors": torch.where(valid.unsqueeze(-1), descriptors, zero),
        "valid": valid,
    }
