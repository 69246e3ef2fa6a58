"""The one error type of the dataset readers: bad input on disk, named by file (or topic), line and problem."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset, trajectory file or rosbag is missing, malformed or inconsistent.

    Subclasses ``ValueError`` so callers that validate arguments generically still catch it. The message always
    names the offending file, folder or topic and says what is wrong with it.
    """
