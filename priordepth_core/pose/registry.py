"""The registry of pose sources: the trainer (``pose.source``) and the Pipeline (``pose_source``) look names up here.

Adding a pose source: write its class in :mod:`.sources` (``solve(problem, generator) -> PoseResult``) and add one
line to ``POSE_SOURCES``; both configs accept the name from then on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from .problem import PoseSourceSettings
from .sources import (
    AnchoredEssentialSource,
    AnchoredRotationPoseNetSource,
    EpipolarCheckedSource,
    EssentialSource,
    FallbackSource,
    PnPSource,
    PoselibEssentialSource,
    PoselibPnPSource,
    PoseNetSource,
    PoseSource,
)

# The essential matrix inside pnp_essential has its own hypothesis budget, whatever the PnP's (its LO-RANSAC stops
# earlier once the inlier ratio makes that confident).
FALLBACK_ESSENTIAL_HYPOTHESES = 128


def pnp_then_essential(settings: PoseSourceSettings) -> FallbackSource:
    """PnP; where it finds fewer than ``min_inliers`` inliers, the essential matrix (translation length from depth)
    if it is better supported. The Pipeline's default."""
    essential = EssentialSource(dataclasses.replace(settings, num_hypotheses=FALLBACK_ESSENTIAL_HYPOTHESES))
    return FallbackSource(PnPSource(settings), essential, "pnp_essential",
                          "PnP failed; pose from the essential matrix with depth scale")


def poselib_pnp_then_essential(settings: PoseSourceSettings) -> FallbackSource:
    """:func:`pnp_then_essential` with poselib's solvers (one pair at a time on the CPU; inference only)."""
    return FallbackSource(PoselibPnPSource(settings), PoselibEssentialSource(settings), "poselib_pnp_essential",
                          "poselib PnP failed; pose from poselib's relative pose with depth scale")


# A PnP pose must keep this share of the essential pose's epipolar inliers, and have this share of its inlier count
# as its own PnP inliers (EpipolarCheckedSource).
EPIPOLAR_AGREEMENT = 0.9
DEPTH_AGREEMENT = 0.5


def poselib_pnp_checked(settings: PoseSourceSettings) -> EpipolarCheckedSource:
    """poselib's PnP, replaced by poselib's relative pose (depth scale) where the PnP pose is unsupported or
    contradicts the epipolar geometry (:class:`EpipolarCheckedSource`); inference only."""
    return EpipolarCheckedSource(PoselibPnPSource(settings), PoselibEssentialSource(settings), "poselib_pnp_checked",
                                 "poselib PnP failed; pose from poselib's relative pose with depth scale",
                                 EPIPOLAR_AGREEMENT, DEPTH_AGREEMENT)


POSE_SOURCES: dict[str, Callable[[PoseSourceSettings], PoseSource]] = {
    "posenet": PoseNetSource,
    "pnp": PnPSource,
    "essential": EssentialSource,
    "pnp_essential": pnp_then_essential,
    "priordepth": AnchoredEssentialSource,
    "priordepth_posenet_t": AnchoredRotationPoseNetSource,
    "poselib_pnp": PoselibPnPSource,
    "poselib_essential": PoselibEssentialSource,
    "poselib_pnp_essential": poselib_pnp_then_essential,
    "poselib_pnp_checked": poselib_pnp_checked,
}
POSE_SOURCE_NAMES = tuple(POSE_SOURCES)
# Sources that read the frozen match cache (training data with data.match_cache); the Pipeline has no such cache.
SOURCES_NEEDING_MATCH_CACHE = ("priordepth", "priordepth_posenet_t")
# The trainer's ``pose.fallback`` value for "no fallback: a failed pair's photometric term is masked".
NO_FALLBACK = "mask"


def pose_source_factory(name: str) -> Callable[[PoseSourceSettings], PoseSource]:
    """The registered constructor of ``name``; ValueError listing the registered names when there is none."""
    try:
        return POSE_SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown pose source {name!r}; registered: {', '.join(POSE_SOURCE_NAMES)}") from None


def build_pose_source(name: str, settings: PoseSourceSettings, fallback: str = NO_FALLBACK) -> PoseSource:
    """The source registered as ``name``, wrapped with the source ``fallback`` for its unsupported pairs unless
    ``fallback`` is ``NO_FALLBACK``. A source that solves nothing from matches (the PoseNet) cannot fail and is never
    wrapped."""
    source = pose_source_factory(name)(settings)
    if fallback == NO_FALLBACK or not source.needs_matches:
        return source
    backup = pose_source_factory(fallback)(settings)
    return FallbackSource(source, backup, name, f"{name} pose not supported; pose from {fallback}")


@dataclass
class PoseSourceSchedule:
    """Which source is active at an optimiser step: ``warmup`` for the first ``warmup_steps`` steps, then ``source``.

    Attributes:
        source: the source after the warm-up.
        warmup: the warm-up source, or None.
        warmup_steps: steps the warm-up lasts.
    """

    source: PoseSource
    warmup: PoseSource | None = None
    warmup_steps: int = 0

    def at(self, step: int) -> PoseSource:
        return self.warmup if self.warmup is not None and step < self.warmup_steps else self.source

    @property
    def sources(self) -> tuple[PoseSource, ...]:
        return (self.source,) if self.warmup is None else (self.warmup, self.source)
