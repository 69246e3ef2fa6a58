"""The pose layer: named pose sources behind one interface, used by the trainer and the Pipeline alike.

``build_pose_source(name, settings)`` gives a :class:`PoseSource`; ``source.solve(PoseProblem(...))`` gives a
:class:`PoseResult` (``T_context_target``, validity, support, inliers, which model won and why). Above
:mod:`..geometry`, :mod:`..models` and :mod:`..losses`; below data, train and inference.
"""

from .problem import EssentialStatus, PoseProblem, PoseSourceSettings
from .registry import (
    NO_FALLBACK,
    POSE_SOURCE_NAMES,
    POSE_SOURCES,
    SOURCES_NEEDING_MATCH_CACHE,
    PoseSourceSchedule,
    build_pose_source,
    pose_source_factory,
)
from .result import PoseResult
from .sources import EssentialSource, FallbackSource, PnPSource, PoseNetSource, PoseSource

__all__ = [
    "NO_FALLBACK",
    "POSE_SOURCES",
    "POSE_SOURCE_NAMES",
    "SOURCES_NEEDING_MATCH_CACHE",
    "EssentialSource",
    "EssentialStatus",
    "FallbackSource",
    "PnPSource",
    "PoseNetSource",
    "PoseProblem",
    "PoseResult",
    "PoseSource",
    "PoseSourceSchedule",
    "PoseSourceSettings",
    "build_pose_source",
    "pose_source_factory",
]
