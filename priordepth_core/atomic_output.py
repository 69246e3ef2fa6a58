"""Write an output folder (a bag, a frame sequence, a run) under a hidden staging name beside it and rename it when
complete, so that an error, a bad input found halfway, Ctrl-C or SIGTERM never leaves a half-written output behind.

The staging folder is ``.<output name>.partial-<pid>``. Only a hard kill (SIGKILL, power loss) can leave one; the
next writer of the same output removes those whose process is gone (:func:`remove_stale_staging`).

Command lines wrap their work in :func:`interrupt_on_sigterm`: SIGTERM then raises :class:`Interrupted` (a
``KeyboardInterrupt``, so code that catches ``Exception`` lets it through) and cleanup runs as for Ctrl-C.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STAGING_INFIX = ".partial-"


class Interrupted(KeyboardInterrupt):
    """A termination signal delivered as an exception; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interruption_signal(error: KeyboardInterrupt) -> signal.Signals:
    """The signal behind an interruption: SIGTERM for :class:`Interrupted` from it, otherwise SIGINT (Ctrl-C)."""
    return signal.Signals(getattr(error, "signum", signal.SIGINT))


@contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Interrupted` in the main thread (elsewhere signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def staging_path(out: Path) -> Path:
    """This process's staging folder for ``out``."""
    return out.parent / f".{out.name}{STAGING_INFIX}{os.getpid()}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove ``.<out name>.partial-<pid>`` folders beside ``out`` whose process no longer runs; returns them.

    Nothing else is touched: other names, staging folders of running processes (a pid reused by an unrelated
    process keeps its folder until that process ends too).
    """
    if not out.parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{out.name}{STAGING_INFIX}") + r"(\d+)")
    removed = []
    for entry in out.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match is None or not entry.is_dir() or entry.is_symlink():
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and not _process_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def check_new_output(out: str | Path) -> Path:
    """``out`` as a Path, or ValueError if something already exists there."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise ValueError(f"{out}: output already exists; remove it or choose another output path")
    return out


def is_marked_output(out: Path, marker: str) -> bool:
    """Whether ``out`` is a folder holding the file ``marker`` (the writer's own output, safe to replace)."""
    return out.is_dir() and (out / marker).is_file()


def _check_replaceable(out: Path, marker: str | None) -> None:
    if marker is None:
        check_new_output(out)
    elif (out.exists() or out.is_symlink()) and not is_marked_output(out, marker):
        raise ValueError(f"{out}: exists and has no {marker} marker, so it was not written by this tool; it is not "
                         "replaced: remove it yourself or choose another output path")


@contextmanager
def atomic_output(out: str | Path, replace_marked: str | None = None) -> Iterator[Path]:
    """Yield the path to write instead of ``out`` (same name, inside this process's staging folder beside ``out``).

    On success the written path is renamed to ``out`` (one rename on the same filesystem); on any exception,
    KeyboardInterrupt and :class:`Interrupted` included, the staging folder is removed and the exception propagates.
    Stale staging folders of dead writers of ``out`` are removed first.

    Args:
        out: the output to create.
        replace_marked: None: ``out`` must not exist. A file name: an existing ``out`` is replaced only if it is a
            folder holding that file (the caller writes the marker into every output it creates); the old folder
            is removed only after the new one is complete.

    Raises:
        ValueError: ``out`` exists (and is not a marked folder), checked before and again when renaming.
    """
    out = Path(out)
    _check_replaceable(out, replace_marked)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    staging = staging_path(out)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        written = staging / out.name  # the final name, so file names derived from it (bag storage files) stay right
        yield written
        if not written.exists():
            raise RuntimeError(f"{out}: nothing was written")
        _check_replaceable(out, replace_marked)
        previous = staging / f"{out.name}.previous"
        replacing = out.exists() or out.is_symlink()
        if replacing:
            os.replace(out, previous)
        try:
            os.replace(written, out)
        except BaseException:
            if replacing:
                os.replace(previous, out)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
