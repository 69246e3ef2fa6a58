"""What the ``python -m priordepth_core.evaluate`` sub-commands print and write: markdown tables and JSON files."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: str | None, payload: dict) -> None:
    """Write ``payload`` to ``path`` (nothing when None) through a temporary file, so a reader never sees half."""
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(target)


def print_table(rows: dict[str, dict[str, float]], keys: list[str]) -> None:
    """Markdown table: one row per entry, one column per metric key."""
    print("| run | " + " | ".join(keys) + " |")
    print("|" + "---|" * (len(keys) + 1))
    for name, metrics in rows.items():
        cells = [f"{metrics[k]:.4f}" if isinstance(metrics.get(k), float) else str(metrics.get(k, "")) for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |")
