"""One synthetic sequence: its specification, camera path, scene and intrinsics, and its rendered frames."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .motion import MOTIONS, Trajectory, make_trajectory, motion_statistics
from .raycast import segment_hits
from .renderer import Renderer
from .scenes import SCENES, Scene, build_scene, camera_clearance

# Horizontal field of view: KITTI's colour cameras (~82 deg) for the street, a Kinect / TUM RGB-D (~63 deg) indoors.
HORIZONTAL_FOV_DEG = {"street": 82.0, "room": 63.0}
MIN_CAMERA_CLEARANCE_M = 0.2


@dataclass(frozen=True)
class SequenceSpec:
    """What to generate.

    Attributes:
        scene: ``"street"`` or ``"room"``.
        motion: ``"car"``, ``"handheld"``, ``"slow"`` or the path of a trajectory file to replay.
        frames: number of frames.
        width, height: image size in pixels.
        seed: seed of the path, the layout and the appearance.
        fps: frame rate; None = the motion's default (car 10 Hz, handheld/slow 30 Hz, replay: see motion.py).
        start_s: replay only: seconds into the file where the replay starts.
    """

    scene: str
    motion: str
    frames: int
    width: int
    height: int
    seed: int = 0
    fps: float | None = None
    start_s: float = 0.0

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        if self.scene not in SCENES:
            raise ValueError(f"unknown scene {self.scene!r}; choose one of {', '.join(SCENES)}")
        if self.motion not in MOTIONS and not Path(self.motion).is_file():
            raise ValueError(f"motion must be one of {', '.join(MOTIONS)} or an existing trajectory file, "
                             f"got {self.motion!r}")
        if int(self.frames) != self.frames or self.frames < 1:
            raise ValueError(f"frames must be a positive integer, got {self.frames!r}")
        if self.width < 8 or self.height < 8 or self.width > 8192 or self.height > 8192:
            raise ValueError(f"image size must be between 8 and 8192 pixels a side, got {self.width}x{self.height}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")


def default_intrinsics(scene: str, width: int, height: int) -> np.ndarray:
    """(3, 3) K with square pixels, the principal point at the image centre ((W - 1) / 2, (H - 1) / 2: pixel
    centres at integers) and the scene's horizontal field of view; fx rounded to micro-pixels so that text files
    hold it exactly."""
    fx = round(width / 2.0 / np.tan(np.deg2rad(HORIZONTAL_FOV_DEG[scene]) / 2.0), 6)
    return np.array([[fx, 0.0, (width - 1) / 2.0], [0.0, fx, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class SyntheticSequence:
    """A generated sequence before rendering.

    Attributes:
        spec: what was asked for.
        trajectory: stamps and ``T_world_cam`` (world z up).
        scene: the geometry and light.
        K: (3, 3) intrinsics at ``spec.width`` x ``spec.height``.
    """

    spec: SequenceSpec
    trajectory: Trajectory
    scene: Scene
    K: np.ndarray

    def metadata(self) -> dict:
        """JSON-able description (no wall-clock times, so that output stays byte-identical for a seed)."""
        spec = asdict(self.spec)
        if spec["motion"] not in MOTIONS:
            spec["motion"] = Path(spec["motion"]).name
        return {
            "spec": spec,
            "K": self.K.tolist(),
            "replay_scale": self.trajectory.scale,
            "num_quads": len(self.scene.quads),
            "num_boxes": len(self.scene.boxes),
            "motion_statistics": {k: round(v, 6) for k, v in motion_statistics(self.trajectory).items()},
            "depth": "camera z in metres; 0 = invalid (sky, at infinity)",
        }


def make_sequence(spec: SequenceSpec) -> SyntheticSequence:
    """Camera path first, then the scene built around it, then a free-space check.

    Raises:
        ValueError: for a bad spec or trajectory file, or when the camera would come closer than
            ``MIN_CAMERA_CLEARANCE_M`` to a surface or pass through one between frames.
    """
    spec.validate()
    trajectory = make_trajectory(spec.motion, spec.scene, spec.seed, int(spec.frames), fps=spec.fps,
                                 start_s=spec.start_s)
    scene = build_scene(spec.scene, spec.seed, trajectory.positions)
    check_free_space(scene, trajectory)
    return SyntheticSequence(spec, trajectory, scene, default_intrinsics(spec.scene, spec.width, spec.height))


def check_free_space(scene: Scene, trajectory: Trajectory, clearance: float = MIN_CAMERA_CLEARANCE_M) -> None:
    """Raise ValueError if a camera position is within ``clearance`` of a surface (or inside a box), or the straight
    path between two consecutive positions crosses a surface."""
    positions = trajectory.positions
    distance = camera_clearance(scene, positions)
    if distance.min() < clearance:
        index = int(np.argmin(distance))
        raise ValueError(f"camera {index} is {distance[index]:.3f} m from a surface (minimum {clearance} m)")
    if len(positions) > 1:
        crossing = segment_hits(scene, positions[:-1], positions[1:])
        if crossing.any():
            index = int(np.flatnonzero(crossing)[0])
            raise ValueError(f"the camera passes through a surface between frames {index} and {index + 1}")


def render_frames(sequence: SyntheticSequence, renderer: Renderer) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(index, rgb (H, W, 3) uint8, depth (H, W) float32)`` for every pose, rendering with ``renderer``
    (which must have the sequence's size)."""
    if (renderer.width, renderer.height) != (sequence.spec.width, sequence.spec.height):
        raise ValueError(f"renderer is {renderer.width}x{renderer.height} but the sequence is "
                         f"{sequence.spec.width}x{sequence.spec.height}")
    renderer.load_scene(sequence.scene)
    for index, T_world_cam in enumerate(sequence.trajectory.T_world_cam):
        rgb, depth = renderer.render(sequence.K, T_world_cam)
        yield index, rgb, depth
