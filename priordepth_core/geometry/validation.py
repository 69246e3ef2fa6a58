"""Input checks shared by the geometry functions: wrong shapes or dtypes raise a ``ValueError`` naming the argument."""

from __future__ import annotations

from collections.abc import Sequence

import torch

ShapeSpec = Sequence[int | str]


def check_shape(x: torch.Tensor, name: str, spec: ShapeSpec, dims: dict[str, int] | None = None,
                floating: bool = True) -> dict[str, int]:
    """Check that ``x`` is a tensor of the given shape, binding symbolic dimensions consistently.

    Args:
        x: the tensor to check.
        name: the argument's name, used in the error message.
        spec: expected shape; ints must match exactly, strings are symbolic dimensions (``"B"``, ``"N"``) that must
            agree with earlier bindings in ``dims``.
        dims: bindings shared across the checks of one call; updated in place. A fresh dict when omitted.
        floating: require a floating-point dtype.

    Returns:
        The updated ``dims`` dictionary.

    Raises:
        ValueError: if ``x`` is not a tensor, has the wrong rank, a wrong dimension, or a non-floating dtype.

    Example:
        >>> dims = check_shape(torch.zeros(2, 10, 2), "x1", ("B", "N", 2))
        >>> dims["N"]
        10
    """
    dims = {} if dims is None else dims
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    expected = "(" + ", ".join(str(s) for s in spec) + ")"
    if x.dim() != len(spec):
        raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}")
    for axis, (size, want) in enumerate(zip(x.shape, spec)):
        if isinstance(want, int):
            if size != want:
                raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)} (axis {axis})")
        elif want in dims and dims[want] != size:
            raise ValueError(
                f"{name} has {want}={size} along axis {axis} but another argument has {want}={dims[want]}"
            )
        else:
            dims[want] = size
    if floating and not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return dims


def check_same_device_dtype(*named: tuple[str, torch.Tensor]) -> None:
    """Raise a ``ValueError`` if the named tensors do not share one device and one dtype."""
    first_name, first = named[0]
    for name, x in named[1:]:
        if x.dtype != first.dtype:
            raise ValueError(f"{name} has dtype {x.dtype} but {first_name} has {first.dtype}")
        if x.device != first.device:
            raise ValueError(f"{name} is on {x.device} but {first_name} is on {first.device}")
