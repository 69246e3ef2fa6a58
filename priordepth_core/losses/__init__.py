"""Self-supervised losses; each is an ``nn.Module`` whose ``forward`` returns ``(loss, metrics)``.

``metrics`` maps ``"<loss>/<name>"`` to detached tensors: 0-dim scalars for logging and, where useful, per-pixel
maps for visualisation.
"""

from .keypoint import (
    KeypointLoss,
    apply_homography,
    homography_warp_fn,
    sample_random_homography,
    warp_image_homography,
)
from .photometric import PhotometricLoss, reprojection_error, ssim_dissimilarity
from .smoothness import SmoothnessLoss, edge_aware_smoothness
from .sparse_prior import SparseDepthPriorLoss, sample_depth_at

__all__ = [
    "KeypointLoss",
    "PhotometricLoss",
    "SmoothnessLoss",
    "SparseDepthPriorLoss",
    "apply_homography",
    "edge_aware_smoothness",
    "homography_warp_fn",
    "reprojection_error",
    "sample_depth_at",
    "sample_random_homography",
    "ssim_dissimilarity",
    "warp_image_homography",
]
