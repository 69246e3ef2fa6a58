"""PriorDepth core: self-supervised monocular depth and keypoint-based differentiable ego-motion.

A ROS-free PyTorch library. Sub-packages by responsibility: ``geometry`` (cameras, SE(3), view synthesis, pose
solvers), ``models``, ``losses``, ``data``, ``train``, ``evaluate``, ``inference`` and ``export``.
"""

__version__ = "0.1.0"
