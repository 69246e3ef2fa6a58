"""Image pairs with known relative pose and the project's keypoint matches on them, for pose-solver evaluation.

Shared by ``benchmarks/solvers.py`` and ``experiments/pose_diagnostics.py``:

- :func:`render_pairs` renders (target, context) pairs of a synthetic suite's training sequences directly (the same
  scene, motion, size and seeds as the suite, without generating the whole cached suite), or pure-rotation pairs: the
  context camera at the target's centre, turned by a random rotation.
- :func:`match_pairs` matches the KeypointNet's top-k keypoints of both images exactly as the trainer does
  (:func:`~priordepth_core.models.select_keypoints`, :func:`~priordepth_core.models.match_descriptors`,
  :func:`~priordepth_core.models.gather_matches`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.sample import relative_poses
from ..data.synthetic.renderer import Renderer
from ..data.synthetic.sequence import SequenceSpec, make_sequence
from ..data.synthetic.suites import SUITES
from ..geometry.se3 import random_rotation
from ..models import KeypointNet, gather_matches, match_descriptors, select_keypoints

DEFAULT_TOP_K = 300


def render_pairs(suite: str, pairs: int, offset: int = 1, seed: int = 0,
                 pure_rotation_deg: float | None = None) -> dict[str, torch.Tensor]:
    """Render ``pairs`` (target, context) pairs from the training sequences of ``suite``.

    Pairs are spread over the suite's training seeds; the target frame of each is drawn with ``seed``.

    Args:
        suite: ``"driving"``, ``"handheld"`` or ``"indoor-slow"`` (scene, motion, size and seeds of that suite).
        pairs: number of pairs P.
        offset: the context frame is ``target + offset`` (ignored for pure rotation).
        seed: draws the frames (and the pure rotations).
        pure_rotation_deg: if given, the context camera sits at the target camera's centre, turned about a random
            axis by an angle uniform in ``[pure_rotation_deg / 2, pure_rotation_deg]``.

    Returns:
        ``image`` and ``context`` (P, 3, H, W) float32 in [0, 1], ``K`` (P, 3, 3) and ``T_context_target``
        (P, 4, 4) float64 (``X_context = T X_target``).
    """
    definition = SUITES[suite]
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    images, contexts, Ks, Ts = [], [], [], []
    with Renderer(definition.width, definition.height) as renderer:
        seeds = definition.train_seeds
        for sequence_seed in seeds:
            count = pairs // len(seeds) + (1 if seeds.index(sequence_seed) < pairs % len(seeds) else 0)
            if count == 0:
                continue
            sequence = make_sequence(SequenceSpec(definition.scene, definition.motion, definition.frames,
                                                  definition.width, definition.height, sequence_seed))
            renderer.load_scene(sequence.scene)
            poses = sequence.trajectory.T_world_cam
            for target in rng.choice(len(poses) - offset, size=count, replace=False):
                T_world_target = poses[target]
                if pure_rotation_deg is None:
                    T_world_context = poses[target + offset]
                else:
                    angle = np.deg2rad(pure_rotation_deg) * (0.5 + 0.5 * float(torch.rand(1, generator=generator)))
                    R = random_rotation(1, max_angle=angle, generator=generator, dtype=torch.float64)[0].numpy()
                    turn = np.eye(4)
                    turn[:3, :3] = R
                    T_world_context = T_world_target @ turn
                rgb_target, _ = renderer.render(sequence.K, T_world_target)
                rgb_context, _ = renderer.render(sequence.K, T_world_context)
                images.append(rgb_target)
                contexts.append(rgb_context)
                Ks.append(sequence.K)
                Ts.append(relative_poses(T_world_target, T_world_context[None])[0])
    to_tensor = lambda rgb: torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
    return {"image": to_tensor(images), "context": to_tensor(contexts),
            "K": torch.from_numpy(np.stack(Ks)).double(), "T_context_target": torch.from_numpy(np.stack(Ts)).double()}


@torch.no_grad()
def match_pairs(keypoint_net: KeypointNet, image: torch.Tensor, context: torch.Tensor, top_k: int = DEFAULT_TOP_K,
                chunk: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The trainer's keypoint matches between ``image`` and ``context`` (B, 3, H, W).

    Returns:
        x_target (B, top_k, 2) and x_context (B, top_k, 2) pixels, weights (B, top_k) (0 for unmatched slots).
    """
    outputs = []
    for start in range(0, image.shape[0], chunk):
        target = select_keypoints(keypoint_net(image[start:start + chunk]), top_k=top_k)
        other = select_keypoints(keypoint_net(context[start:start + chunk]), top_k=top_k)
        match = match_descriptors(target["descriptors"], other["descriptors"], target["valid"], other["valid"])
        outputs.append(gather_matches(target, other, match))
    return tuple(torch.cat(parts) for parts in zip(*outputs))
