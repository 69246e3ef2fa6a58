"""Fixtures of the inference tests: a tiny untrained model file, exact synthetic frames, a private ONNX cache."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pytest

# A textured plane seen by a camera translating sideways: each frame is a crop of one large texture, so depth
# (constant PLANE_DEPTH) and motion (SHIFT_PX * PLANE_DEPTH / FOCAL metres right per frame) are exact.
PLANE_HW = (96, 320)
FOCAL = 180.0
PLANE_DEPTH = 6.0
SHIFT_PX = 4


@dataclass
class PlaneSequence:
    frames: list[np.ndarray]  # (H, W, 3) uint8
    K: np.ndarray
    tx_per_frame: float  # metres to the right per frame
    texture: np.ndarray
    positions: np.ndarray  # (N, 3) camera positions in the first camera's frame


def plane_texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Blob texture with edges at several scales (what a keypoint detector needs), uint8 RGB."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 6, width // 6, 3)).astype(np.float32)
    texture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = cv2.resize(rng.random((height // 2, width // 2, 3)).astype(np.float32), (width, height),
                      interpolation=cv2.INTER_LINEAR)
    texture = np.clip(0.75 * texture + 0.25 * fine, 0, 1)
    return (texture * 255).astype(np.uint8)


def make_plane_sequence(frames: int = 8, seed: int = 0, vertical_px: tuple[int, ...] = ()) -> PlaneSequence:
    """Sideways motion by SHIFT_PX a frame, plus ``vertical_px[i]`` pixels down (camera moving down) if given."""
    height, width = PLANE_HW
    texture = plane_texture(height + 16, width + SHIFT_PX * frames + 16, seed)
    dy = [vertical_px[i] if i < len(vertical_px) else 0 for i in range(frames)]
    crops = [np.ascontiguousarray(texture[8 + dy[i]:8 + dy[i] + height, 8 + SHIFT_PX * i: 8 + SHIFT_PX * i + width])
             for i in range(frames)]
    K = np.array([[FOCAL, 0.0, (width - 1) / 2], [0.0, FOCAL, (height - 1) / 2], [0.0, 0.0, 1.0]])
    metres_per_px = PLANE_DEPTH / FOCAL
    positions = np.array([[SHIFT_PX * i * metres_per_px, dy[i] * metres_per_px, 0.0] for i in range(frames)])
    return PlaneSequence(crops, K, SHIFT_PX * metres_per_px, texture, positions)


@pytest.fixture(scope="session")
def plane_sequence_frames() -> PlaneSequence:
    return make_plane_sequence()


@pytest.fixture(scope="session", autouse=True)
def private_onnx_cache(tmp_path_factory):
    """Exported ONNX graphs go to a temporary cache, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIORDEPTH_CACHE", str(tmp_path_factory.mktemp("priordepth_cache")))
        yield


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A packaged model of untrained lite networks (16-d descriptors) trained-size 64x96."""
    from priordepth_core.inference import save_inference_model, untrained_inference_model

    path = tmp_path_factory.mktemp("tiny_model") / "tiny.pt"
    save_inference_model(untrained_inference_model((64, 96), descriptor_dim=16, seed=0), path)
    return path


@pytest.fixture(scope="session")
def street_sequence():
    """8 frames of the synthetic street (car motion, 10 Hz) at 320x96 with exact depth and poses."""
    from priordepth_core.data.synthetic import Renderer, SequenceSpec, make_sequence
    from priordepth_core.data.synthetic.sequence import render_frames

    sequence = make_sequence(SequenceSpec("street", "car", 8, 320, 96, seed=901))
    with Renderer(320, 96) as renderer:
        rendered = [(rgb, depth) for _, rgb, depth in render_frames(sequence, renderer)]
    return sequence, rendered


@pytest.fixture(scope="session")
def shipped_keypoint_backend():
    """The shipped model's networks at its 96x320 input on the PyTorch CPU backend."""
    from priordepth_core.inference.backends import TorchBackend
    from priordepth_core.inference.model_file import default_checkpoint_path, load_inference_model

    return TorchBackend(load_inference_model(default_checkpoint_path()), (96, 320))


@pytest.fixture
def oracle_backend(shipped_keypoint_backend):
    """``make(depth_source)``: a backend with the shipped KeypointNet and exact depth from ``depth_source(image)``
    ((1, 3, h, w) tensor -> (h, w) array), so tests of the geometry do not depend on the DepthNet's quality."""
    import torch

    from priordepth_core.inference.backends import NetworkBackend

    class OracleDepthBackend(NetworkBackend):
        name = "oracle"

        def depth(self, image):
            return torch.as_tensor(np.asarray(depth_source_of[self](image), dtype=np.float32))[None, None]

        def keypoints(self, image):
            return shipped_keypoint_backend.keypoints(image)

    depth_source_of = {}

    def make(depth_source):
        backend = OracleDepthBackend(shipped_keypoint_backend.input_size)
        depth_source_of[backend] = depth_source
        return backend

    return make


@pytest.fixture
def plane_depth_backend(oracle_backend):
    """Exact depth of the plane sequence (constant PLANE_DEPTH)."""
    return oracle_backend(lambda image: np.full(image.shape[-2:], PLANE_DEPTH))


def write_tum_plane_sequence(root, frames: int = 8):
    """The plane sequence in TUM RGB-D layout with exact depth PNGs, ground truth and intrinsics.txt."""
    seq = make_plane_sequence(frames, vertical_px=(0, 0, 1, 2, 3, 3, 2, 2))  # not a straight line: Sim(3) is defined
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb_lines, depth_lines, gt_lines = ["# color images"], ["# depth maps"], ["# timestamp tx ty tz qx qy qz qw"]
    depth_png = np.full(PLANE_HW, int(PLANE_DEPTH * 5000), dtype=np.uint16)
    for i, frame in enumerate(seq.frames):
        stamp = f"{10 + i / 10:.6f}"
        cv2.imwrite(str(root / "rgb" / f"{stamp}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "depth" / f"{stamp}.png"), depth_png)
        rgb_lines.append(f"{stamp} rgb/{stamp}.png")
        depth_lines.append(f"{stamp} depth/{stamp}.png")
        x, y, z = seq.positions[i]
        gt_lines.append(f"{stamp} {x:.9f} {y:.9f} {z:.9f} 0 0 0 1")
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    (root / "groundtruth.txt").write_text("\n".join(gt_lines) + "\n")
    K = seq.K
    (root / "intrinsics.txt").write_text(f"{K[0, 0]} {K[1, 1]} {K[0, 2]} {K[1, 2]} {PLANE_HW[1]} {PLANE_HW[0]}\n")
    return root


@pytest.fixture(scope="session")
def tum_plane_sequence(tmp_path_factory):
    return write_tum_plane_sequence(tmp_path_factory.mktemp("tum_plane") / "plane_seq")
