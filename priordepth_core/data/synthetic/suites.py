"""Named benchmark suites: fixed seeds, a train/test split of sequences, generated on first use and cached.

Cache: ``$PRIORDEPTH_CACHE`` or ``~/.cache/priordepth``; a suite lives in ``<cache>/suites/<name>-v<version>/``
with one TUM-layout folder per sequence (``train/<seed>``, ``test/<seed>``) and ``suite.json``::

    {"name": ..., "version": ..., "format": "tum", "scene": ..., "motion": ..., "width": ..., "height": ...,
     "frames": ..., "splits": {"train": [{"path": "train/seed_0100", "seed": 100}, ...], "test": [...]}}

Paths in the manifest are relative to the suite root. Test sequences use seeds (hence layouts, paths, textures
offsets and light) never used for training. ``suite.json`` is written last and the folder renamed into place, so a
suite folder that exists is complete. Bump ``SUITE_VERSION`` whenever the generator's output changes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ...atomic_output import atomic_output
from .renderer import Renderer
from .sequence import SequenceSpec, make_sequence
from .writers import write_sequence

SUITE_VERSION = 1


@dataclass(frozen=True)
class SuiteDefinition:
    """A suite: every sequence shares scene kind, motion, size and length; seeds differ."""

    name: str
    scene: str
    motion: str
    width: int
    height: int
    frames: int
    train_seeds: tuple[int, ...]
    test_seeds: tuple[int, ...]
    description: str


SUITES = {
    "driving": SuiteDefinition("driving", "street", "car", 640, 192, 150, tuple(range(100, 106)), (900, 901),
                               "KITTI-like street, car at 5-12 m/s, 10 Hz"),
    "handheld": SuiteDefinition("handheld", "room", "handheld", 320, 240, 150, tuple(range(200, 206)), (910, 911),
                                "furnished room, fast shaky rotation-heavy handheld camera, 30 Hz"),
    "indoor-slow": SuiteDefinition("indoor-slow", "room", "slow", 320, 240, 150, tuple(range(300, 306)),
                                   (920, 921), "furnished room, slow TUM fr1_xyz/fr2_desk-like sweep, 30 Hz"),
}


def cache_dir() -> Path:
    """``$PRIORDEPTH_CACHE`` or ``~/.cache/priordepth``."""
    return Path(os.environ.get("PRIORDEPTH_CACHE") or Path.home() / ".cache" / "priordepth")


def suite_path(name: str, root: str | Path | None = None) -> Path:
    """Where suite ``name`` lives (whether or not it exists yet)."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}")
    base = Path(root) if root is not None else cache_dir() / "suites"
    return base / f"{name}-v{SUITE_VERSION}"


def _sequence_folder(split: str, seed: int) -> str:
    return f"{split}/seed_{seed:04d}"


def ensure_suite(name: str, root: str | Path | None = None, progress: bool = False) -> Path:
    """Return the root of suite ``name``, generating it first if it is not cached.

    Args:
        name: ``"driving"``, ``"handheld"`` or ``"indoor-slow"``.
        root: folder holding suites; default ``<cache>/suites``.
        progress: show progress bars while generating.

    Returns:
        the suite root, holding ``suite.json`` (see the module docstring).

    Raises:
        ValueError: for an unknown suite name.
    """
    target = suite_path(name, root)
    if (target / "suite.json").is_file():
        return target
    if target.exists():
        raise ValueError(f"{target} exists but holds no suite.json (not made by ensure_suite?); remove it")
    definition = SUITES[name]
    try:
        with atomic_output(target) as temporary:
            temporary.mkdir()
            splits: dict[str, list[dict]] = {}
            with Renderer(definition.width, definition.height) as renderer:
                for split, seeds in (("train", definition.train_seeds), ("test", definition.test_seeds)):
                    (temporary / split).mkdir()
                    splits[split] = []
                    for seed in seeds:
                        spec = SequenceSpec(definition.scene, definition.motion, definition.frames, definition.width,
                                            definition.height, seed)
                        folder = _sequence_folder(split, seed)
                        write_sequence(make_sequence(spec), temporary / folder, "tum", renderer=renderer,
                                       progress=progress)
                        splits[split].append({"path": folder, "seed": seed})
            manifest = {
                "name": name, "version": SUITE_VERSION, "format": "tum", "description": definition.description,
                "scene": definition.scene, "motion": definition.motion, "width": definition.width,
                "height": definition.height, "frames": definition.frames, "splits": splits,
            }
            (temporary / "suite.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    except ValueError:
        if not (target / "suite.json").is_file():
            raise
        # another process finished the same suite first: keep theirs
    return target


def load_manifest(root: str | Path) -> dict:
    """The parsed ``suite.json`` of a suite root."""
    return json.loads((Path(root) / "suite.json").read_text())
