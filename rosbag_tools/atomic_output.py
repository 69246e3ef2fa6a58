"""Write an output folder (a bag, a frame sequence) under a hidden temporary name and rename it when complete, so an
error, a bad input found halfway or Ctrl-C never leaves a half-written output behind."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def check_new_output(out: str | Path) -> Path:
    """``out`` as a Path, or ValueError if something already exists there (outputs are never overwritten)."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise ValueError(f"{out}: output already exists; remove it or choose another output path")
    return out


@contextmanager
def atomic_output(out: str | Path) -> Iterator[Path]:
    """Yield the path to write instead of ``out`` (same name, inside a hidden staging folder beside ``out``).

    On success the written path is renamed to ``out`` (one rename on the same filesystem); on any exception,
    KeyboardInterrupt included, the staging folder is removed and the exception propagates.

    Raises:
        ValueError: ``out`` exists already, or appeared while writing.
    """
    out = check_new_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        written = staging / out.name  # the final name, so file names derived from it (bag storage files) stay right
        yield written
        if not written.exists():
            raise RuntimeError(f"{out}: nothing was written")
        check_new_output(out)
        os.replace(written, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
