"""The project's named synthetic benchmark suites as a dataset: TUM-layout sequences, generated on first use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import DatasetError
from .frames import FrameReader
from .synthetic.suites import ensure_suite, load_manifest
from .tum_rgbd import TumRgbdReader


class SyntheticSuiteReader(TumRgbdReader):
    """One sequence of a synthetic suite (``depth_exact/`` float depth, exact poses), read as TUM RGB-D."""

    held_out_test = True

    @classmethod
    def for_split(cls, data: Any, split: str) -> list[FrameReader]:
        """Every sequence of the ``split`` of suite ``data.suite`` (generated and cached on first use), in manifest
        order, one reader each."""
        root = Path(ensure_suite(data.suite, progress=True))
        sequences = [entry["path"] for entry in load_manifest(root)["splits"][split]]
        if not sequences:
            raise DatasetError(f"suite {data.suite!r} has no {split} sequences in {root / 'suite.json'}")
        return [cls(root / name) for name in sequences]
