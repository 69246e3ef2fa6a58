"""Numerical parity of an exported graph against PyTorch: max absolute and relative error per output."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

# Relative error (max |exported - torch| / max |torch|) an export must stay within, by precision.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}


@dataclass(frozen=True)
class ParityRow:
    """One output at one input size."""

    output: str
    size_hw: tuple[int, int]
    max_abs_error: float
    max_rel_error: float
    reference_max: float

    def passes(self, tolerance: float) -> bool:
        return bool(np.isfinite(self.max_rel_error) and self.max_rel_error <= tolerance)


def parity_image(size_hw: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W) float32 in [0, 1]: smooth random texture with edges (a fixed, image-like parity input)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, size_hw[0] // 8), max(2, size_hw[1] // 8), generator=generator)
    image = torch.nn.functional.interpolate(coarse, size=size_hw, mode="bilinear", align_corners=False)
    noise = 0.1 * torch.rand(1, 3, *size_hw, generator=generator)
    return (image + noise).clamp(0, 1)


def compare_outputs(names: Sequence[str], reference: Sequence[torch.Tensor | np.ndarray],
                    exported: Sequence[torch.Tensor | np.ndarray], size_hw: tuple[int, int]) -> list[ParityRow]:
    """Rows of errors of ``exported`` against ``reference`` (same order and shapes as ``names``).

    Raises:
        ValueError: a count or shape mismatch (an export that changed the interface).
    """
    if not (len(names) == len(reference) == len(exported)):
        raise ValueError(f"expected {len(names)} outputs {list(names)}, got {len(reference)} and {len(exported)}")
    rows = []
    for name, ref, out in zip(names, reference, exported):
        ref = ref.detach().float().cpu().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref, np.float32)
        out = out.detach().float().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out, np.float32)
        if ref.shape != out.shape:
            raise ValueError(f"output {name!r}: exported shape {out.shape} differs from PyTorch's {ref.shape}")
        abs_error = float(np.max(np.abs(out.astype(np.float64) - ref))) if ref.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        rows.append(ParityRow(name, tuple(size_hw), abs_error, abs_error / max(scale, 1e-12), scale))
    return rows


def format_rows(rows: Sequence[ParityRow], tolerance: float) -> str:
    """A Markdown table of the rows with a pass/fail column."""
    lines = ["| output | input HxW | max abs error | max rel error | max abs PyTorch | within tolerance |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row.output} | {row.size_hw[0]}x{row.size_hw[1]} | {row.max_abs_error:.3e} | "
                     f"{row.max_rel_error:.3e} | {row.reference_max:.4g} | "
                     f"{'yes' if row.passes(tolerance) else 'NO'} (<= {tolerance:g}) |")
    return "\n".join(lines)
