"""Atomic checkpoints that resume bit-for-bit: weights, optimiser, scheduler, position in the data, every RNG.

Everything is stored as tensors and plain Python values so ``torch.load(..., weights_only=True)`` reads it back.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

LAST_CHECKPOINT = "last.pt"
# The last.pt before the newest save: what --resume falls back to when last.pt cannot be read.
PREVIOUS_CHECKPOINT = "previous.pt"
EPOCH_CHECKPOINT = "epoch_{epoch:03d}.pt"
# save_atomic's temporary names for the trainer's own checkpoints (".last.pt.k3j_x9.tmp"): a SIGKILL mid-save leaves
# one behind, and only names of this exact form are ever deleted as stale.
_TRAINER_TEMPORARY = re.compile(r"\.(last|previous|epoch_\d{3,})\.pt\.[A-Za-z0-9_]+\.tmp")
_EPOCH_CHECKPOINT = re.compile(r"epoch_\d{3,}\.pt")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def capture_rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's and PyTorch's generators, as weights_only-loadable values."""
    # The legacy global generator is captured because dependencies (augmentations, OpenCV glue) may draw from it.
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {"kind": np_kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    legacy_state = (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"])
    np.random.set_state(legacy_state)  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _temporary_path(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def save_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """Write ``payload`` with ``torch.save`` to a temporary file in the same folder, then rename it into place.

    A crash mid-write leaves the previous checkpoint intact: readers only ever see complete files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_path(path)
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_keeping_previous(payload: dict[str, Any], path: str | Path, previous: str | Path) -> None:
    """:func:`save_atomic` to ``path``, after keeping the file there as ``previous``.

    ``previous`` is a hard link to the old file (a copy where the file system has no links), put in place atomically,
    so ``path`` exists at every moment and a damaged ``path`` still leaves an intact older checkpoint.
    """
    path, previous = Path(path), Path(previous)
    if path.is_file():
        tmp = _temporary_path(previous)
        try:
            tmp.unlink()
            try:
                os.link(path, tmp)
            except OSError:
                shutil.copyfile(path, tmp)
            os.replace(tmp, previous)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    save_atomic(payload, path)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary checkpoint files an interrupted save (SIGKILL, power loss) left in ``folder``.

    Only the trainer's own temporary names are touched (``.last.pt.*.tmp``, ``.previous.pt.*.tmp``,
    ``.epoch_NNN.pt.*.tmp``); returns the files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.iterdir() if _TRAINER_TEMPORARY.fullmatch(p.name) and p.is_file())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def fallback_checkpoints(folder: str | Path) -> list[Path]:
    """``previous.pt`` and the epoch checkpoints in ``folder``, newest first (by modification time)."""
    folder = Path(folder)
    candidates = [folder / PREVIOUS_CHECKPOINT, *(p for p in folder.glob("epoch_*.pt")
                                                   if _EPOCH_CHECKPOINT.fullmatch(p.name))]
    return sorted((p for p in candidates if p.is_file()), key=lambda p: p.stat().st_mtime_ns, reverse=True)


def _unreadable_reason(path: Path, exc: Exception) -> str:
    """Why ``torch.load`` failed, in words (torch's own message suggests unsafe loading; it is never shown)."""
    with open(path, "rb") as handle:
        head = handle.read(len(_ZIP_MAGIC))
    if not head:
        return "is empty (0 bytes)"
    if head != _ZIP_MAGIC:
        return "is not a PriorDepth checkpoint or model: it is not a file written by torch.save"
    if isinstance(exc, pickle.UnpicklingError):
        return ("is not a PriorDepth checkpoint or model: it holds Python objects besides tensors and plain values, "
                "which PriorDepth never writes")
    return "is truncated or damaged (an interrupted copy or write): its torch.save archive cannot be read"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", expected: str = "") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); a clear error when it is missing or unreadable.

    Args:
        path: the file.
        map_location: where tensors go.
        expected: what the caller wants (e.g. "a trainer checkpoint (runs/<name>/last.pt)"), added to errors.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file is empty, truncated, or not a PriorDepth checkpoint; the message says which.
    """
    path = Path(path)
    wanted = f"; expected {expected}" if expected else ""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist{wanted}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise ValueError(f"checkpoint {path} {_unreadable_reason(path, exc)}{wanted}") from None
