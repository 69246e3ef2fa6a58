"""When the tracked frame becomes the new keyframe: enough parallax, too few tracked matches, or too long ago.

Frames are tracked against the last keyframe (frame-to-keyframe), not the previous frame, so small per-frame errors
do not add up between keyframes; a new keyframe is taken when

- the rotation-compensated parallax to the keyframe (the median displacement of the inlier matches once the
  rotation is removed, network pixels) reaches ``parallax_px``: the baseline is now long enough to observe depth
  well (and the window bundle adjustment gets a well-conditioned view), or
- the tracked-match ratio (the frame's inliers over the inliers of the first frame tracked against this keyframe)
  falls below ``min_tracked_ratio``: the view has moved away (rotation, occlusion) and tracking would soon be lost,
- or ``max_frames`` frames have passed since the keyframe (a bound on the time a keyframe's depth is reused).

``parallax_px`` 0 makes every tracked frame a keyframe: frame-to-frame tracking (the Pipeline's default, measured
best on the synthetic suites; docs/odometry.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyframeDecision:
    """Whether to take a new keyframe, and why (for the frame's message)."""

    new_keyframe: bool
    reason: str = ""


@dataclass(frozen=True)
class KeyframePolicy:
    """The thresholds of the module docstring (``PipelineConfig``'s ``keyframe_*`` fields)."""

    parallax_px: float = 8.0
    min_tracked_ratio: float = 0.6
    max_frames: int = 15

    def decide(self, parallax_px: float, num_inliers: int, first_tracked_inliers: int,
               frames_since_keyframe: int) -> KeyframeDecision:
        """Decide for a tracked (not lost) frame.

        Args:
            parallax_px: rotation-compensated parallax of its inliers to the keyframe.
            num_inliers: its inlier matches to the keyframe.
            first_tracked_inliers: inliers of the first frame tracked against the keyframe (the reference of the
                ratio; this frame's own count when it is that first frame).
            frames_since_keyframe: frames since the keyframe, this one included (>= 1).

        Raises:
            ValueError: a negative count or parallax, or ``frames_since_keyframe`` below 1.
        """
        if parallax_px < 0 or num_inliers < 0 or first_tracked_inliers < 0 or frames_since_keyframe < 1:
            raise ValueError(f"invalid keyframe inputs: parallax {parallax_px}, inliers {num_inliers}, first "
                             f"{first_tracked_inliers}, frames since keyframe {frames_since_keyframe}")
        if self.parallax_px == 0 or parallax_px >= self.parallax_px:
            return KeyframeDecision(True, f"parallax {parallax_px:.1f} px >= {self.parallax_px:g} px")
        ratio = num_inliers / first_tracked_inliers if first_tracked_inliers > 0 else 0.0
        if ratio < self.min_tracked_ratio:
            return KeyframeDecision(True, f"tracked-match ratio {ratio:.2f} < {self.min_tracked_ratio:g}")
        if frames_since_keyframe >= self.max_frames:
            return KeyframeDecision(True, f"{frames_since_keyframe} frames since the keyframe")
        return KeyframeDecision(False)
