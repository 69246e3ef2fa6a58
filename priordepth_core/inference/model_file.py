"""The networks inference needs, read from any of the project's checkpoints, and the small packaged model file.

Three kinds of file are understood (all read with ``torch.load(weights_only=True)``):

- a packaged inference model (:func:`pack_inference_model`, ``format`` = ``INFERENCE_MODEL_FORMAT``): the DepthNet
  (finest output scale only) and a KeypointNet in fp16, their constructor arguments, the training input size and a
  provenance record (which run, pose source, metrics). This is what ships in ``priordepth_core/assets/``;
- a trainer checkpoint (``python -m priordepth_core.train``): ``model`` (the ``DepthPoseModel`` state dict) and
  ``config``; its KeypointNet is used when the run had one (pose sources ``pnp``/``essential`` or a keypoint loss);
- a KeypointNet checkpoint (``python -m priordepth_core.train.keypoints``), only as the separate keypoint source
  for a trainer checkpoint without a KeypointNet (a PoseNet run).

:func:`read_model_file` tells them apart; every command that takes a model file reads it through this module.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..models import DepthNet, KeypointNet
from ..train.checkpoint import load_checkpoint, save_atomic
from ..train.config import config_from_dict

INFERENCE_MODEL_FORMAT = "priordepth-inference-model"
INFERENCE_MODEL_VERSION = 1
DEFAULT_MODEL_NAME = "priordepth_driving.pt"
ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
# The packaged model must stay small enough to ship inside the pip package.
MAX_PACKAGED_BYTES = 15 * 1024 * 1024

PACKED_MODEL = "packed inference model"
TRAINER_CHECKPOINT = "trainer checkpoint"
KEYPOINT_CHECKPOINT = "KeypointNet checkpoint"
EXPECTED_MODEL_FILE = ("a packed inference model (python -m priordepth_core.inference.pack; e.g. "
                       "priordepth_core/assets/priordepth_driving.pt) or a trainer checkpoint (runs/<name>/last.pt)")


# Names a user may give instead of a path (the node's model:=driving): the packed models in ASSETS_DIR by use. A
# name whose file is not shipped yet is refused with the list of shipped ones.
SHIPPED_MODELS = {"driving": DEFAULT_MODEL_NAME, "indoor": "priordepth_indoor.pt"}


def default_checkpoint_path() -> Path:
    """The inference model shipped inside the package (``priordepth_core/assets/priordepth_driving.pt``)."""
    return ASSETS_DIR / DEFAULT_MODEL_NAME


def model_path(model: str | Path | None) -> Path:
    """The file of a model given by path, by shipped name (:data:`SHIPPED_MODELS`: ``driving``, ``indoor``), or
    None / "" for the default shipped model.

    Raises:
        FileNotFoundError: a shipped name whose file this package does not hold (the message lists those it does).
    """
    if model is None or str(model) == "":
        return default_checkpoint_path()
    name = str(model)
    if name not in SHIPPED_MODELS:
        return Path(model)
    path = ASSETS_DIR / SHIPPED_MODELS[name]
    if not path.is_file():
        shipped = [n for n, file in SHIPPED_MODELS.items() if (ASSETS_DIR / file).is_file()]
        raise FileNotFoundError(f"no {name!r} model is shipped in this version ({ASSETS_DIR} lacks "
                                f"{SHIPPED_MODELS[name]}); shipped: {', '.join(shipped) or 'none'}; or give the path "
                                "of a packed model, e.g. the DIR/model.pt of priordepth-train-bag")
    return path


@dataclass
class InferenceModel:
    """Networks in eval mode (float32, CPU) plus what is known about them.

    Attributes:
        depth_net: DepthNet producing only the finest scale.
        keypoint_net: KeypointNet.
        input_size: ``(H, W)`` the networks were trained at.
        depth_config: DepthNet constructor arguments (``num_layers``, ``lite``, ``min_depth``, ``max_depth``).
        keypoint_config: KeypointNet constructor arguments (``descriptor_dim``, ``lite``, ``upsample_descriptors``,
            ``descriptor_head``; files written before the light head lack it, which means ``"kp2d"``).
        provenance: where the weights come from (JSON-able).
        source: the file they were read from.
    """

    depth_net: DepthNet
    keypoint_net: KeypointNet
    input_size: tuple[int, int]
    depth_config: dict[str, Any]
    keypoint_config: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def fingerprint(self) -> str:
        """sha256 of both networks' weights and constructor arguments (keys exported graphs in the cache)."""
        digest = hashlib.sha256()
        digest.update(json.dumps([self.depth_config, self.keypoint_config], sort_keys=True).encode())
        for prefix, net in (("depth", self.depth_net), ("keypoint", self.keypoint_net)):
            for name, tensor in net.state_dict().items():
                digest.update(f"{prefix}.{name}".encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


@dataclass
class ModelFile:
    """A model file read safely and classified.

    Attributes:
        path: where it was read from.
        kind: ``PACKED_MODEL``, ``TRAINER_CHECKPOINT`` or ``KEYPOINT_CHECKPOINT``.
        state: its contents (on the CPU).
    """

    path: Path
    kind: str
    state: dict[str, Any]

    @property
    def training_config(self) -> dict[str, Any] | None:
        """The ``ExperimentConfig`` dict of the run behind the weights, when the file records it."""
        if self.kind == TRAINER_CHECKPOINT:
            return self.state["config"]
        if self.kind == PACKED_MODEL:
            return self.state.get("provenance", {}).get("training_config")
        return None


def _kind(state: dict[str, Any]) -> str | None:
    if state.get("format") == INFERENCE_MODEL_FORMAT:
        return PACKED_MODEL
    config = state.get("config")
    if "model" in state and isinstance(config, dict):
        if "data" in config:
            return TRAINER_CHECKPOINT
        if "descriptor_dim" in config:
            return KEYPOINT_CHECKPOINT
    return None


def read_model_file(path: str | Path) -> ModelFile:
    """Read ``path`` with ``torch.load(weights_only=True)`` and tell which kind of PriorDepth file it is.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is unreadable or not a PriorDepth checkpoint or model; the message says what is expected.
    """
    path = Path(path)
    state = load_checkpoint(path, map_location="cpu", expected=EXPECTED_MODEL_FILE)
    kind = _kind(state) if isinstance(state, dict) else None
    if kind is None:
        contents = f"keys {sorted(state)[:8]}" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise ValueError(f"{path} is not a PriorDepth checkpoint or model (it holds {contents}); "
                         f"expected {EXPECTED_MODEL_FILE}")
    return ModelFile(path, kind, state)


def build_depth_net(config: dict[str, Any]) -> DepthNet:
    """The inference DepthNet (finest scale only) from its constructor arguments (``depth_config``)."""
    return DepthNet(num_layers=int(config["num_layers"]), lite=bool(config["lite"]),
                    min_depth=float(config["min_depth"]), max_depth=float(config["max_depth"]), scales=(0,))


def _keypoint_config(descriptor_dim: int, lite: bool, upsample_descriptors: bool = True,
                     descriptor_head: str = "kp2d") -> dict[str, Any]:
    """A ``keypoint_config`` dict; ``descriptor_head`` only when it is not the default ``"kp2d"``, so the configs
    (and :meth:`InferenceModel.fingerprint`, the exported-graph cache key) of every KP2D-head model stay as before."""
    config = {"descriptor_dim": int(descriptor_dim), "lite": bool(lite),
              "upsample_descriptors": bool(upsample_descriptors)}
    if descriptor_head != "kp2d":
        config["descriptor_head"] = str(descriptor_head)
    return config


def _build_keypoint_net(config: dict[str, Any]) -> KeypointNet:
    # Dropout is inactive in eval mode; 0 keeps the module identical to what export traces.
    return KeypointNet(descriptor_dim=int(config["descriptor_dim"]), lite=bool(config["lite"]),
                       upsample_descriptors=bool(config.get("upsample_descriptors", True)), dropout=0.0,
                       descriptor_head=str(config.get("descriptor_head", "kp2d")))


def _load_into(net: torch.nn.Module, state: dict[str, torch.Tensor], what: str, path: Path) -> None:
    """Load ``state`` (any float dtype), ignoring only the coarser DepthNet output heads inference never uses."""
    wanted = net.state_dict().keys()
    unused = [k for k in state if k not in wanted]
    unexpected = [k for k in unused if not k.startswith("decoder.dispconv.")]
    missing = [k for k in wanted if k not in state]
    if unexpected or missing:
        raise ValueError(f"{path}: {what} weights do not fit the network (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    try:
        net.load_state_dict({k: v for k, v in state.items() if k in wanted})
    except RuntimeError as exc:  # shape mismatch
        raise ValueError(f"{path}: {what} weights do not fit the network: {exc}") from exc


def _submodule_state(model_state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in model_state.items() if k.startswith(prefix)}


def _keypoint_net_from_file(path: str | Path) -> tuple[KeypointNet, dict[str, Any], dict[str, Any]]:
    """A KeypointNet from a keypoint checkpoint, a trainer checkpoint holding one, or a packaged model."""
    model_file = read_model_file(path)
    path, state = model_file.path, model_file.state
    if model_file.kind == PACKED_MODEL:
        config, weights = state["keypoint_config"], state["keypoint_net"]
        provenance = {"keypoint_source": str(path)}
    elif model_file.kind == TRAINER_CHECKPOINT:
        config, weights, provenance = _trainer_keypoint_net(path, state)
    else:
        saved = state["config"]
        config = _keypoint_config(saved["descriptor_dim"], saved["lite"], saved.get("upsample_descriptors", True),
                                  saved.get("descriptor_head", "kp2d"))
        weights = state["model"]
        provenance = {"keypoint_source": str(path), "keypoint_training": _jsonable(state["config"]),
                      "keypoint_step": int(state.get("step", -1))}
    net = _build_keypoint_net(config)
    _load_into(net, weights, "KeypointNet", path)
    return net, dict(config), provenance


def load_keypoint_net_file(path: str | Path) -> tuple[KeypointNet, dict[str, Any], dict[str, Any]]:
    """(KeypointNet in eval mode, its ``keypoint_config``, provenance) from any file holding one: a KeypointNet
    checkpoint, a trainer checkpoint with a KeypointNet or a packed model.

    Raises:
        FileNotFoundError: ``path`` is missing.
        ValueError: the file holds no KeypointNet, or its weights do not fit its config.
    """
    net, config, provenance = _keypoint_net_from_file(path)
    return net.eval(), config, provenance


def _trainer_keypoint_net(path: Path, state: dict[str, Any]):
    weights = _submodule_state(state["model"], "keypoint_net.")
    if not weights:
        raise ValueError(f"{path} was trained with pose source {state['config'].get('pose', {}).get('source')!r} "
                         f"and holds no KeypointNet; give one with --keypoints / keypoint_checkpoint")
    model = state["config"]["model"]
    config = _keypoint_config(model.get("descriptor_dim", 256), model.get("keypoint_lite", False), True,
                              model.get("keypoint_descriptor_head", "kp2d"))
    return config, weights, {"keypoint_source": f"{path} (joint DepthPoseModel)"}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _depth_net_of(model_file: ModelFile) -> tuple[DepthNet, dict[str, Any], tuple[int, int]]:
    """(DepthNet, its constructor arguments, training input size) from a packed model or a trainer checkpoint."""
    path, state = model_file.path, model_file.state
    if model_file.kind == PACKED_MODEL:
        if int(state.get("version", 0)) > INFERENCE_MODEL_VERSION:
            raise ValueError(f"{path}: inference model version {state['version']} is newer than this code "
                             f"understands ({INFERENCE_MODEL_VERSION})")
        depth_config = dict(state["depth_config"])
        weights = state["depth_net"]
        input_size = tuple(int(v) for v in state["input_size"])
    elif model_file.kind == TRAINER_CHECKPOINT:
        config = config_from_dict(state["config"])
        depth_config = {"num_layers": config.model.num_layers, "lite": config.model.lite,
                        "min_depth": config.model.min_depth, "max_depth": config.model.max_depth}
        weights = _submodule_state(state["model"], "depth_net.")
        input_size = (config.data.height, config.data.width)
    else:
        raise ValueError(f"{path} is a {model_file.kind} and holds no DepthNet; expected {EXPECTED_MODEL_FILE}")
    depth_net = build_depth_net(depth_config)
    _load_into(depth_net, weights, "DepthNet", path)
    return depth_net, depth_config, input_size


def load_depth_net(path: str | Path) -> tuple[DepthNet, dict[str, Any], tuple[int, int], ModelFile]:
    """The DepthNet alone (eval mode, CPU) from a packed model or a trainer checkpoint (PoseNet runs included).

    Returns:
        the network, its constructor arguments, the training input size ``(H, W)`` and the file read (for its
        ``training_config``).

    Raises:
        FileNotFoundError: ``path`` is missing.
        ValueError: ``path`` is not a packed model or trainer checkpoint, or its weights do not fit.
    """
    model_file = read_model_file(path)
    depth_net, depth_config, input_size = _depth_net_of(model_file)
    return depth_net.eval(), depth_config, input_size, model_file


def load_inference_model(path: str | Path, keypoint_path: str | Path | None = None) -> InferenceModel:
    """Read the inference networks from a packaged model or a trainer checkpoint.

    Args:
        path: packaged inference model or trainer checkpoint.
        keypoint_path: a KeypointNet to use instead of (or, for PoseNet runs, in the absence of) the one in
            ``path``.

    Returns:
        :class:`InferenceModel` with both networks in eval mode on the CPU.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is not a checkpoint of the expected kind, or its weights do not fit.
    """
    model_file = read_model_file(path)
    path, state = model_file.path, model_file.state
    depth_net, depth_config, input_size = _depth_net_of(model_file)
    keypoint_net = keypoint_config = None
    provenance: dict[str, Any]
    if model_file.kind == PACKED_MODEL:
        provenance = dict(state.get("provenance", {}))
        if keypoint_path is None:
            keypoint_config = dict(state["keypoint_config"])
            keypoint_net = _build_keypoint_net(keypoint_config)
            _load_into(keypoint_net, state["keypoint_net"], "KeypointNet", path)
    else:
        config = config_from_dict(state["config"])
        provenance = {"source_checkpoint": str(path), "run_name": config.name, "pose_source": config.pose.source,
                      "step": int(state.get("step", -1)), "epoch": int(state.get("epoch", -1)),
                      "training_config": _jsonable(state["config"])}
        history = json.loads(state["history"]) if isinstance(state.get("history"), str) else []
        if history:
            provenance["last_evaluation"] = history[-1]
        if keypoint_path is None:
            keypoint_config, weights, kp_provenance = _trainer_keypoint_net(path, state)
            keypoint_net = _build_keypoint_net(keypoint_config)
            _load_into(keypoint_net, weights, "KeypointNet", path)
            provenance.update(kp_provenance)
    if keypoint_path is not None:
        keypoint_net, keypoint_config, kp_provenance = _keypoint_net_from_file(keypoint_path)
        provenance.update(kp_provenance)
    return InferenceModel(depth_net.eval(), keypoint_net.eval(), input_size, depth_config, keypoint_config,
                          provenance, str(path))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp16 copies of floating tensors (halves the file; the networks compute in float32 after loading)."""
    return {k: (v.detach().half() if v.is_floating_point() else v.detach()).clone() for k, v in state.items()}


def untrained_inference_model(input_size: tuple[int, int], descriptor_dim: int = 128, seed: int = 0,
                               min_depth: float = 0.1, max_depth: float = 100.0) -> InferenceModel:
    """Randomly initialised lite networks (for speed measurements and tests where the weights do not matter)."""
    torch.manual_seed(seed)
    depth_config = {"num_layers": 18, "lite": True, "min_depth": min_depth, "max_depth": max_depth}
    keypoint_config = _keypoint_config(descriptor_dim, True)
    return InferenceModel(build_depth_net(depth_config).eval(), _build_keypoint_net(keypoint_config).eval(),
                          tuple(input_size), depth_config, keypoint_config,
                          {"note": f"untrained (random initialisation, seed {seed})"}, "untrained")


def save_inference_model(model: InferenceModel, out: str | Path, provenance: dict[str, Any] | None = None) -> int:
    """Write ``model`` as a packaged inference model (fp16 weights), atomically; returns the file size in bytes.

    Raises:
        ValueError: the file would exceed ``MAX_PACKAGED_BYTES`` (nothing is written then).
    """
    payload = {
        "format": INFERENCE_MODEL_FORMAT,
        "version": INFERENCE_MODEL_VERSION,
        "depth_config": dict(model.depth_config),
        "keypoint_config": dict(model.keypoint_config),
        "input_size": list(model.input_size),
        "depth_net": _half(model.depth_net.state_dict()),
        "keypoint_net": _half(model.keypoint_net.state_dict()),
        "provenance": _jsonable(model.provenance if provenance is None else provenance),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    size = buffer.tell()
    if size > MAX_PACKAGED_BYTES:
        raise ValueError(f"packaged model would be {size / 2**20:.1f} MiB, over the "
                         f"{MAX_PACKAGED_BYTES / 2**20:.0f} MiB limit for shipping in the package; use lite networks")
    out = Path(out)
    save_atomic(payload, out)
    os.chmod(out, 0o644)  # a package asset, readable by everyone (the temporary file was private)
    return size


def pack_inference_model(checkpoint: str | Path, out: str | Path, keypoint_checkpoint: str | Path | None = None,
                         metrics: dict[str, Any] | None = None, note: str = "") -> dict[str, Any]:
    """Write the small fp16 inference model file from a trainer checkpoint (and optionally a KeypointNet).

    Args:
        checkpoint: trainer checkpoint (or a packaged model, to re-pack with another KeypointNet).
        out: output file; written atomically.
        keypoint_checkpoint: KeypointNet source when ``checkpoint`` has none or another is wanted.
        metrics: evaluation results to record in the provenance (e.g. a ``python -m priordepth_core.evaluate``
            JSON).
        note: free text recorded in the provenance (e.g. the training command).

    Returns:
        the provenance record written.

    Raises:
        ValueError: unusable inputs, or a result larger than ``MAX_PACKAGED_BYTES``.
    """
    model = load_inference_model(checkpoint, keypoint_checkpoint)
    provenance = dict(model.provenance)
    provenance.update({
        "packaged_from": str(checkpoint),
        "packaged_from_sha256": _file_sha256(Path(checkpoint)),
        "packaged_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "weights_dtype": "float16",
    })
    if keypoint_checkpoint is not None:
        provenance["keypoint_source_sha256"] = _file_sha256(Path(keypoint_checkpoint))
    if metrics:
        provenance["metrics"] = _jsonable(metrics)
    if note:
        provenance["note"] = note
    save_inference_model(model, out, provenance)
    return provenance
