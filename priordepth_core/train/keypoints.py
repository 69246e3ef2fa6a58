"""Homography-adaptation training of KeypointNet alone (the KP2D recipe) on real photographs at hand.

Each step takes a batch of random crops of real images (random scale, random crop, random horizontal flip), warps
every crop by a random homography (:func:`sample_random_homography`, the warped image sees only the original, no
black borders), jitters the warped copy photometrically (brightness, contrast, saturation, hue, blur, noise: what a
second view of the same scene changes), runs KeypointNet on both and minimises :class:`KeypointLoss` through the
known homography. Adam with a cosine decay of the learning rate to a tenth; the rate is a pure function of the step,
so resuming needs no scheduler state.

The default images are scikit-image's bundled real photographs (see :data:`TRAINING_IMAGES`); more come from image
folders by argument. The graffiti pair used for evaluation (``homography_graf``) is refused as training data.

``--init FILE`` starts from the weights of another KeypointNet (a keypoint checkpoint, a trainer checkpoint or a
packed model) wherever name and shape match, and ``--freeze-init`` keeps those fixed: with ``--descriptor-head
light`` only the new descriptor head then learns (docs/keypoints.md, "Light descriptor head").

Example:
    python -m priordepth_core.train.keypoints --out runs/keypoints/keypoint_net.pt --steps 2000 --lite
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from kornia.enhance import adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation
from kornia.filters import gaussian_blur2d
from tqdm import tqdm

from ..losses.keypoint import KeypointLoss, homography_warp_fn, sample_random_homography, warp_image_homography
from ..models.keypoint_net import DESCRIPTOR_HEADS, KEYPOINT_CELL, KeypointNet
from .checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_atomic

# scikit-image's bundled *real photographs* (no network needed), as (name, loader). Left out on purpose: synthetic
# or drawn images (colorwheel, logo, horse silhouette, checkerboard), near-empty ones (hubble_deep_field is black
# sky, microaneurysms is 102 px, retina is mostly smooth fundus), face crops (lfw_subset, 25 px) and ``cat`` (the
# same photo as ``chelsea``). ``coffee`` and ``rocket`` are held out of training for the synthetic-pair evaluation
# (:data:`HELD_OUT_IMAGES`). Greyscale photos are converted to RGB.
TRAINING_IMAGES: tuple[str, ...] = (
    "astronaut",  # portrait with a detailed background (RGB)
    "camera",  # cameraman, the classic outdoor scene (grey)
    "chelsea",  # cat, fur and fabric texture (RGB)
    "motorcycle_left",  # Middlebury 2014 Motorcycle, indoor clutter (RGB)
    "motorcycle_right",  # its stereo partner: a real second viewpoint of the same scene
    "coins",  # Greek coins, small round structures (grey)
    "page",  # scanned book page, text corners (grey)
    "text",  # photographed street-sign text (grey)
    "clock",  # motion-blurred wall clock (grey)
    "moon",  # lunar surface craters (grey)
    "immunohistochemistry",  # microscope photo, dense blob texture (RGB)
    "brick",  # CC0 brick-wall texture photo (grey)
    "grass",  # CC0 grass texture photo (grey)
    "gravel",  # CC0 gravel texture photo (grey)
)
HELD_OUT_IMAGES: tuple[str, ...] = ("coffee", "rocket")
# Folder names and file prefixes of the graffiti evaluation pair, never to be trained on.
FORBIDDEN_TRAINING_MARKERS = ("homography_graf", "graf")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff")

DEFAULT_SIZE = (240, 320)
# KP2D trains with Adam 1e-3 and Dropout2d 0.2 for ~50 COCO epochs. For a run of a few hundred steps on one CPU
# thread both collapse the descriptors (measured at 128x160, batch 4, lite, 80 steps: nearest-neighbour descriptor
# recall 0.02 with lr 1e-3 + dropout 0.2, 0.06 with lr 1e-3 + no dropout, 0.16 with lr 3e-4 + no dropout; the two
# branches see different dropout masks, and a constant descriptor is the triplet loss's easy minimum at ``margin``).
DEFAULT_LR = 3e-4
DEFAULT_DROPOUT = 0.0
FINAL_LR_FRACTION = 0.1
# KP2D's colour jitter on the warped copy: brightness, contrast, saturation (relative) and hue (fraction of a turn).
JITTER = {"brightness": 0.5, "contrast": 0.5, "saturation": 0.2, "hue": 0.05}
BLUR_PROBABILITY = 0.3
NOISE_STD_MAX = 0.02
# Crops are cut from the image scaled by 1 to this factor above the smallest scale that covers the crop.
MAX_ZOOM = 1.6


def skimage_photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled photos by name as (H, W, 3) uint8 RGB (``motorcycle_left|right`` = stereo)."""
    import skimage.data

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage.data.stereo_motorcycle()
        image = left if name == "motorcycle_left" else right
    else:
        loader = getattr(skimage.data, name, None)
        if loader is None or not callable(loader):
            raise ValueError(f"scikit-image has no bundled image {name!r}")
        image = loader()
    return as_rgb_uint8(np.asarray(image), name)


def as_rgb_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """(H, W), (H, W, 1|3|4) uint8 -> (H, W, 3) uint8 RGB; a clear error for anything else."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"{name} must be a uint8 numpy array, got {getattr(image, 'dtype', type(image).__name__)}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name} must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def _is_forbidden(path: Path) -> bool:
    parts = [p.lower() for p in path.resolve().parts]
    return FORBIDDEN_TRAINING_MARKERS[0] in parts or path.name.lower().startswith(FORBIDDEN_TRAINING_MARKERS[1])


def load_image_folder(folder: str | Path) -> list[tuple[str, np.ndarray]]:
    """Every image file directly inside ``folder`` as ``(path, (H, W, 3) uint8 RGB)``, sorted by name.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: it holds no readable image, or it is (or holds) the graffiti evaluation data.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    if _is_forbidden(folder):
        raise ValueError(f"{folder} holds the graf evaluation images, which must never be used for training")
    images = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if _is_forbidden(path):
            raise ValueError(f"{path} is a graf evaluation image, which must never be used for training")
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read image {path}")
        images.append((str(path), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    if not images:
        raise ValueError(f"image folder {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return images


class HomographyPairSampler:
    """Random (source, warped target, homography) training batches from a list of RGB images.

    All randomness comes from one ``torch.Generator`` so a run is reproducible and resumable from its state.

    Args:
        images: (H, W, 3) uint8 RGB images, each at least 16 pixels on a side.
        size: ``(h, w)`` of the training crops, multiples of 8.
        generator: the random generator (CPU).
    """

    def __init__(self, images: Sequence[np.ndarray], size: tuple[int, int], generator: torch.Generator):
        if not images:
            raise ValueError("need at least one training image")
        height, width = size
        if height % KEYPOINT_CELL or width % KEYPOINT_CELL or height < 4 * KEYPOINT_CELL or width < 4 * KEYPOINT_CELL:
            raise ValueError(f"size must be multiples of {KEYPOINT_CELL}, at least {4 * KEYPOINT_CELL}, got {size}")
        self.images = [as_rgb_uint8(image, f"images[{i}]") for i, image in enumerate(images)]
        for i, image in enumerate(self.images):
            if min(image.shape[:2]) < 16:
                raise ValueError(f"images[{i}] is too small ({image.shape[:2]}); need at least 16x16")
        self.size = (int(height), int(width))
        self.generator = generator

    def _uniform(self, low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=self.generator, dtype=torch.float64)

    def random_crop(self) -> np.ndarray:
        """One (h, w, 3) uint8 crop of a random image at a random scale, flipped half the time."""
        height, width = self.size
        index = int(torch.randint(len(self.images), (1,), generator=self.generator))
        image = self.images[index]
        cover = max(height / image.shape[0], width / image.shape[1])
        scale = cover * float(self._uniform(1.0, MAX_ZOOM, 1))
        new_w = max(width, round(image.shape[1] * scale))
        new_h = max(height, round(image.shape[0] * scale))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
        y0 = int(torch.randint(new_h - height + 1, (1,), generator=self.generator))
        x0 = int(torch.randint(new_w - width + 1, (1,), generator=self.generator))
        crop = resized[y0:y0 + height, x0:x0 + width]
        if float(torch.rand(1, generator=self.generator)) < 0.5:
            crop = crop[:, ::-1]
        return np.ascontiguousarray(crop)

    def photometric_jitter(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) in [0, 1] -> jittered copy: colour (KP2D ranges), optional blur, Gaussian noise."""
        B = image.shape[0]

        def factor(amount: float) -> torch.Tensor:
            return self._uniform(1 - amount, 1 + amount, B).to(image.dtype)

        image = adjust_brightness(image, factor(JITTER["brightness"]) - 1, clip_output=True)
        image = adjust_contrast(image, factor(JITTER["contrast"]), clip_output=True)
        image = adjust_saturation(image, factor(JITTER["saturation"]))
        hue = self._uniform(-JITTER["hue"], JITTER["hue"], B).to(image.dtype) * 2 * math.pi
        image = adjust_hue(image, hue)
        blur = torch.rand(B, generator=self.generator) < BLUR_PROBABILITY
        if blur.any():
            sigma = self._uniform(0.3, 1.2, int(blur.sum())).to(image.dtype)
            blurred = gaussian_blur2d(image[blur], (5, 5), torch.stack([sigma, sigma], dim=-1))
            image = image.clone()
            image[blur] = blurred
        noise_std = self._uniform(0.0, NOISE_STD_MAX, B, 1, 1, 1).to(image.dtype)
        noise = torch.randn(image.shape, generator=self.generator, dtype=image.dtype)
        return (image + noise * noise_std).clamp(0, 1)

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A training batch.

        Returns:
            source: (B, 3, h, w) crops in [0, 1].
            target: (B, 3, h, w) the crops warped by ``H_target_source`` and photometrically jittered.
            H_target_source: (B, 3, 3) maps source pixels to target pixels.
        """
        crops = np.stack([self.random_crop() for _ in range(batch)])  # (B, h, w, 3)
        source = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
        H_target_source = sample_random_homography(batch, *self.size, generator=self.generator)
        warped, _ = warp_image_homography(source, H_target_source)
        return source, self.photometric_jitter(warped), H_target_source


def learning_rate(step: int, total_steps: int, base_lr: float) -> float:
    """Cosine decay from ``base_lr`` at step 0 to ``FINAL_LR_FRACTION * base_lr`` at ``total_steps``."""
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return base_lr * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


def build_keypoint_net(config: dict[str, Any]) -> KeypointNet:
    """KeypointNet from a checkpoint's ``config`` (``descriptor_dim``, ``lite``, optional ``dropout`` and
    ``descriptor_head``, ``"kp2d"`` when absent)."""
    return KeypointNet(descriptor_dim=int(config["descriptor_dim"]), lite=bool(config["lite"]),
                       dropout=float(config.get("dropout", DEFAULT_DROPOUT)),
                       descriptor_head=str(config.get("descriptor_head", "kp2d")))


def init_from(net: KeypointNet, path: str | Path) -> list[str]:
    """Copy into ``net`` every tensor of the KeypointNet in ``path`` whose name and shape match; returns their names.

    ``path`` may be a KeypointNet checkpoint, a trainer checkpoint holding a KeypointNet or a packed inference model
    (fp16 weights are cast to ``net``'s dtype).

    Raises:
        ValueError: nothing matches (another kind of network).
    """
    theirs = _keypoint_tensors(path)
    ours = net.state_dict()
    matched = [k for k, v in ours.items() if k in theirs and theirs[k].shape == v.shape]
    if not matched:
        raise ValueError(f"{path}: no KeypointNet tensor matches this network")
    net.load_state_dict({**ours, **{k: theirs[k].to(ours[k].dtype) for k in matched}})
    return matched


def _keypoint_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The KeypointNet tensors of a packed model (``keypoint_net``), a trainer checkpoint (``model`` entries under
    ``keypoint_net.``) or a KeypointNet checkpoint (``model``). Read here, not through inference.model_file: the
    training layer does not import the inference layer."""
    state = load_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("keypoint_net"), dict):
        return state["keypoint_net"]
    model = state.get("model") if isinstance(state, dict) else None
    if isinstance(model, dict):
        prefix = "keypoint_net."
        nested = {key[len(prefix):]: value for key, value in model.items() if key.startswith(prefix)}
        return nested or model
    raise ValueError(f"{path}: holds no KeypointNet (a packed model, trainer or KeypointNet checkpoint)")


def freeze(net: KeypointNet, names: Sequence[str]) -> None:
    """No gradients for the parameters in ``names``; BatchNorm layers whose parameters are all frozen are put in
    eval mode (running statistics fixed too). Call after ``net.train()``."""
    names = set(names)
    for name, parameter in net.named_parameters():
        if name in names:
            parameter.requires_grad_(False)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d) and not any(p.requires_grad for p in module.parameters()):
            module.eval()


def load_keypoint_net(path: str | Path, device: str | torch.device = "cpu") -> tuple[KeypointNet, dict[str, Any]]:
    """(KeypointNet in eval mode, its config) from a checkpoint written by :func:`train_keypoint_net`.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: unreadable, or not a KeypointNet checkpoint of this module.
    """
    state = load_checkpoint(path, map_location=device)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path} is not a KeypointNet checkpoint (needs 'model' and 'config')")
    config = state["config"]
    if not isinstance(config, dict) or not {"descriptor_dim", "lite"} <= config.keys():
        raise ValueError(f"{path} config lacks 'descriptor_dim'/'lite': {config}")
    net = build_keypoint_net(config)
    try:
        net.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ValueError(f"{path} weights do not fit KeypointNet({config}): {exc}") from exc
    return net.to(device).eval(), config


def strip_keypoint_checkpoint(checkpoint: str | Path, out: str | Path, half: bool = True) -> int:
    """Write the weights and config of a training checkpoint alone (no optimiser or generator state; fp16 floats
    when ``half``, as the packed models hold them), atomically, in the format :func:`load_keypoint_net` and the
    Pipeline's ``keypoint_checkpoint`` read; returns the file size in bytes."""
    state = load_checkpoint(checkpoint)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{checkpoint} is not a KeypointNet checkpoint (needs 'model' and 'config')")
    weights = {k: (v.half() if half and v.is_floating_point() else v).clone() for k, v in state["model"].items()}
    save_atomic({"model": weights, "config": state["config"], "step": int(state.get("step", -1))}, out)
    return Path(out).stat().st_size


def gather_training_images(names: Sequence[str], folders: Sequence[str | Path]) -> tuple[list[str], list[np.ndarray]]:
    """(source names, RGB images) of the named scikit-image photos and every image of the folders."""
    sources, images = [], []
    for name in names:
        if name in HELD_OUT_IMAGES:
            raise ValueError(f"{name!r} is held out for evaluation; do not train on it")
        sources.append(f"skimage:{name}")
        images.append(skimage_photo(name))
    for folder in folders:
        for path, image in load_image_folder(folder):
            sources.append(path)
            images.append(image)
    if not images:
        raise ValueError("no training images: give scikit-image names or --images folders")
    return sources, images


def train_keypoint_net(out: str | Path, steps: int, size: tuple[int, int] = DEFAULT_SIZE, batch: int = 4,
                       lite: bool = False, descriptor_dim: int = 256, lr: float = DEFAULT_LR,
                       dropout: float = DEFAULT_DROPOUT, seed: int = 0,
                       images: Sequence[np.ndarray] | None = None, image_sources: Sequence[str] | None = None,
                       resume: bool = False, save_every: int = 200, log_every: int = 50,
                       progress: bool = True, descriptor_head: str = "kp2d", init: str | Path | None = None,
                       freeze_init: bool = False) -> dict[str, Any]:
    """Train KeypointNet by homography adaptation and save it atomically to ``out``.

    Args:
        out: checkpoint path; written every ``save_every`` steps and at the end, never partially.
        steps: total optimisation steps (including those of a resumed run).
        size: ``(h, w)`` training crop size, multiples of 8.
        batch: images per step.
        lite, descriptor_dim: KeypointNet options.
        lr: Adam's base learning rate (cosine decay to a tenth).
        dropout: KeypointNet's Dropout2d probability during training.
        seed: seeds the weights, dropout and the data generator.
        images: (H, W, 3) uint8 RGB training images; default :data:`TRAINING_IMAGES`.
        image_sources: names of ``images`` recorded in the checkpoint's config.
        resume: continue from ``out``; the model and data options then come from the checkpoint.
        save_every, log_every: intervals in steps (0 disables intermediate saves / log lines).
        progress: show a tqdm bar.
        descriptor_head: KeypointNet's descriptor head (``"kp2d"`` or ``"light"``).
        init: start from the matching weights of this KeypointNet file (:func:`init_from`).
        freeze_init: keep the weights taken from ``init`` fixed (only the others train).

    Returns:
        ``{"step", "config", "history"}``: history holds ``(step, mean loss, mean metrics)`` per log interval.

    Raises:
        FileNotFoundError: ``resume`` without a checkpoint at ``out``.
        ValueError: bad options, or a resumed checkpoint of another kind.
    """
    if descriptor_head not in DESCRIPTOR_HEADS:
        raise ValueError(f"unknown descriptor_head {descriptor_head!r}; choose from {', '.join(DESCRIPTOR_HEADS)}")
    if freeze_init and not init:
        raise ValueError("freeze_init needs init (the weights to keep fixed)")
    if steps < 1 or batch < 1 or lr <= 0 or save_every < 0 or log_every < 0:
        raise ValueError(f"need steps >= 1, batch >= 1, lr > 0 and non-negative intervals, got steps={steps}, "
                         f"batch={batch}, lr={lr}, save_every={save_every}, log_every={log_every}")
    out = Path(out)
    state = None
    if resume:
        state = load_checkpoint(out)
        if "optimizer" not in state or "generator" not in state:
            raise ValueError(f"{out} is not a resumable keypoint training checkpoint")
        saved = state["config"]
        size, batch, lite, descriptor_dim, lr, dropout, seed = (
            tuple(saved["size"]), saved["batch"], saved["lite"], saved["descriptor_dim"], saved["lr"],
            saved["dropout"], saved["seed"])
        descriptor_head, init, freeze_init = (saved.get("descriptor_head", "kp2d"), saved.get("init") or None,
                                              bool(saved.get("freeze_init", False)))
        image_sources = saved["images"] if image_sources is None else image_sources
    if images is None:
        image_sources, images = gather_training_images(TRAINING_IMAGES, [])
    image_sources = list(image_sources) if image_sources is not None else [f"array:{i}" for i in range(len(images))]
    if len(image_sources) != len(images):
        raise ValueError(f"image_sources has {len(image_sources)} names for {len(images)} images")

    config = {"descriptor_dim": int(descriptor_dim), "lite": bool(lite), "upsample_descriptors": True,
              "size": [int(size[0]), int(size[1])], "batch": int(batch), "lr": float(lr), "dropout": float(dropout),
              "seed": int(seed), "steps": int(steps), "images": image_sources, "descriptor_head": str(descriptor_head),
              "init": str(init) if init else "", "freeze_init": bool(freeze_init)}
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    sampler = HomographyPairSampler(images, tuple(size), generator)
    net = build_keypoint_net(config)
    initialised: list[str] = []
    if state is not None:
        initialised = list(state.get("initialised", []))
    elif init:
        initialised = init_from(net, init)
        new = sorted({k.rsplit(".", 1)[0] for k in net.state_dict() if k not in initialised})
        print(f"initialised {len(initialised)} of {len(net.state_dict())} tensors from {init}; "
              f"new: {', '.join(new) or 'none'}", flush=True)
    net.train()
    if freeze_init:
        freeze(net, initialised)
    trainable = [p for p in net.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("every parameter is frozen: --init covers the whole network")
    optimizer = torch.optim.Adam(trainable, lr=lr)
    loss_fn = KeypointLoss()
    step = 0
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        restore_rng_state(state["rng"])
        step = int(state["step"])

    def save() -> None:
        save_atomic({"model": net.state_dict(), "optimizer": optimizer.state_dict(), "config": config, "step": step,
                     "generator": generator.get_state(), "rng": capture_rng_state(), "initialised": initialised},
                    out)

    history: list[dict[str, Any]] = []
    window: dict[str, list[float]] = {}
    bar = tqdm(total=steps, initial=step, desc="keypoints", disable=not progress, mininterval=5.0)
    start = time.perf_counter()
    while step < steps:
        source, target, H_target_source = sampler.sample(batch)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, lr)
        out_source, out_target = net(source), net(target)
        loss, metrics = loss_fn(out_source, out_target, homography_warp_fn(H_target_source, tuple(size)))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite keypoint loss at step {step}: {metrics}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        for key, value in metrics.items():
            window.setdefault(key.split("/")[-1], []).append(float(value))
        bar.update(1)
        if log_every and (step % log_every == 0 or step == steps):
            means = {key: float(np.mean(values)) for key, values in window.items()}
            history.append({"step": step, "seconds": time.perf_counter() - start, **means})
            bar.set_postfix(loss=f"{means['loss']:.3f}", recall=f"{means['descriptor_recall']:.2f}")
            print(json.dumps(history[-1]), flush=True)
            window = {}
        if save_every and step % save_every == 0 and step < steps:
            save()
    bar.close()
    save()
    return {"step": step, "config": config, "history": history}


EXAMPLE = """example (the project's model, ~35 min on one CPU thread):
  python -m priordepth_core.train.keypoints --out runs/keypoints/keypoint_net.pt --steps 800 --lite \\
      --descriptor-dim 128 --batch 4 --size 240x320 --seed 0
  python -m priordepth_core.train.keypoints --out runs/keypoints/keypoint_net.pt --steps 1600 --resume
"""


def _parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 240x320, got {text!r}") from None
    if height % KEYPOINT_CELL or width % KEYPOINT_CELL or height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive multiples of {KEYPOINT_CELL}, got {text!r}")
    return height, width


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m priordepth_core.train.keypoints",
                                     description=__doc__.split("\n")[0], epilog=EXAMPLE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="checkpoint file to write (atomically)")
    parser.add_argument("--steps", type=int, required=True, help="total optimisation steps")
    parser.add_argument("--size", type=_parse_size, default=None, help="training crop HxW, multiples of 8 "
                        f"(default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default 4)")
    parser.add_argument("--lite", action="store_true", default=None, help="half-width KeypointNet")
    parser.add_argument("--descriptor-dim", type=int, default=None, help="descriptor length (default 256)")
    parser.add_argument("--descriptor-head", choices=DESCRIPTOR_HEADS, default=None,
                        help="descriptor head: kp2d (KP2D's 3x3 convs, default) or light (1x1 + depthwise)")
    parser.add_argument("--init", default=None, metavar="FILE",
                        help="start from the matching weights (name and shape) of this KeypointNet: a keypoint or "
                        "trainer checkpoint or a packed model, e.g. priordepth_core/assets/priordepth_indoor.pt")
    parser.add_argument("--freeze-init", action="store_true", default=None,
                        help="keep the weights taken from --init fixed (e.g. train only a new descriptor head)")
    parser.add_argument("--lr", type=float, default=None, help=f"Adam learning rate (default {DEFAULT_LR:g})")
    parser.add_argument("--dropout", type=float, default=None,
                        help=f"Dropout2d probability while training (default {DEFAULT_DROPOUT:g}; KP2D 0.2)")
    parser.add_argument("--images", nargs="+", default=[], metavar="DIR",
                        help="extra folders of training images (the graf evaluation pair is refused)")
    parser.add_argument("--no-skimage", action="store_true", help="train on --images only")
    parser.add_argument("--resume", action="store_true",
                        help="continue from --out (its options kept; a larger --steps stretches the cosine schedule)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    parser.add_argument("--save-every", type=int, default=200, help="intermediate checkpoint interval (0 = off)")
    parser.add_argument("--log-every", type=int, default=50, help="print mean metrics every N steps (JSON lines)")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenCV CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    chosen = {"size": args.size, "batch": args.batch, "lite": args.lite, "descriptor_dim": args.descriptor_dim,
              "lr": args.lr, "dropout": args.dropout, "seed": args.seed, "descriptor_head": args.descriptor_head,
              "init": args.init, "freeze_init": args.freeze_init}
    try:
        if args.resume:
            saved = load_checkpoint(args.out)["config"]
            saved = {"descriptor_head": "kp2d", "init": "", "freeze_init": False, **saved}
            clashes = [f"{key}={value} (checkpoint: {saved[key]})" for key, value in chosen.items()
                       if value is not None and (list(value) if key == "size" else value) != saved[key]]
            if clashes:
                raise ValueError("--resume keeps the checkpoint's options; these differ: " + ", ".join(clashes))
            sources = saved["images"]
            names = [s.split(":", 1)[1] for s in sources if s.startswith("skimage:")]
            folders = sorted({str(Path(s).parent) for s in sources if not s.startswith("skimage:")})
            sources, images = gather_training_images(names, folders)
            if sources != saved["images"]:
                raise ValueError("the training images changed since the checkpoint was written")
        else:
            sources, images = gather_training_images([] if args.no_skimage else TRAINING_IMAGES, args.images)
        defaults = {"size": DEFAULT_SIZE, "batch": 4, "lite": False, "descriptor_dim": 256, "lr": DEFAULT_LR,
                    "dropout": DEFAULT_DROPOUT, "seed": 0, "descriptor_head": "kp2d", "init": None,
                    "freeze_init": False}
        options = {key: defaults[key] if value is None else value for key, value in chosen.items()}
        print(f"training on {len(images)} images: {', '.join(sources)}", flush=True)
        result = train_keypoint_net(args.out, args.steps, images=images, image_sources=sources, resume=args.resume,
                                    save_every=args.save_every, log_every=args.log_every, **options)
    except (ValueError, FileNotFoundError, FloatingPointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} at step {result['step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
