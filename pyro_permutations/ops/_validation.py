"""Argument checks shared by the tensor operations.

Every check raises :class:`ValueError` (or :class:`TypeError` for a non-tensor) whose message
names the argument, says what is wrong and what to do instead.
"""

import numbers

import torch

#: Largest ``n`` for which all ``n!`` permutations are enumerated (``10! = 3,628,800`` rows).
MAX_ENUMERATE_N = 10


def check_tensor(x, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def check_floating(x, name):
    """``x`` is a float32 or float64 tensor (half precision is too coarse for the solvers)."""
    check_tensor(x, name)
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"{name} must have a floating-point dtype (float32 or float64), got {x.dtype}; "
            f"convert it with {name}.double() or {name}.float()"
        )


def check_square(x, name):
    """``x`` has shape ``(..., N, N)`` with ``N >= 1``."""
    check_tensor(x, name)
    if x.dim() < 2 or x.shape[-1] != x.shape[-2] or x.shape[-1] == 0:
        raise ValueError(
            f"{name} must have shape (..., N, N) with N >= 1 (a batch of square matrices), "
            f"got shape {tuple(x.shape)}"
        )


def is_int(n):
    """``n`` is an integer number: a Python or NumPy integer, not a bool. Every integer
    argument (sizes, counts) is checked with this, and converted with ``int(n)``."""
    return isinstance(n, numbers.Integral) and not isinstance(n, bool)


def check_device(device, name):
    """``device`` (a ``torch.device`` or a device string) as a ``torch.device``."""
    if isinstance(device, (str, torch.device)):
        try:
            return torch.device(device)
        except RuntimeError:
            pass
    raise ValueError(
        f"{name} must be a torch.device or a device string such as 'cpu' or 'cuda', got {device!r}"
    )


def check_size(n, name, meaning):
    """``n`` is a positive integer (a Python or NumPy integer, not a bool); returns ``int(n)``.

    ``meaning`` says what it counts, for the message (e.g. ``"the matrix size N"``).
    """
    if not is_int(n) or n < 1:
        raise ValueError(f"{name} must be a positive int ({meaning}), got {n!r}")
    return int(n)


def broadcast_shapes(what, *named):
    """``torch.broadcast_shapes`` of the shapes in ``named``, ``(name, shape)`` pairs, or a
    ``ValueError`` naming every argument with its shape; ``what`` says which shapes they are
    (e.g. ``"batch shapes"``)."""
    try:
        return torch.broadcast_shapes(*(torch.Size(shape) for _, shape in named))
    except RuntimeError as e:
        listed = " and ".join(f"{name} {tuple(shape)}" for name, shape in named)
        raise ValueError(
            f"{what} of {listed} do not broadcast; make them equal or 1 in each dimension "
            f"(aligned from the right)"
        ) from e


def check_no_nan(x, name):
    """``x`` holds no NaN."""
    if torch.isnan(x).any():
        raise ValueError(f"{name} contains NaN; check the computation that produced it")


def check_scores(x, name, allow_neg_inf=False):
    """``x`` is a floating batch of square score matrices without NaN or ``+inf``.

    ``-inf`` entries (forbidden pairs) are allowed only when ``allow_neg_inf``.
    """
    check_floating(x, name)
    check_square(x, name)
    check_no_nan(x, name)
    if torch.isposinf(x).any():
        raise ValueError(
            f"{name} contains +inf; scores must be finite (or -inf for forbidden pairs)"
        )
    if not allow_neg_inf and torch.isneginf(x).any():
        raise ValueError(f"{name} contains -inf; this operation needs finite scores")


def check_perm(perm, name):
    """``perm`` has shape ``(..., n)``, an integer dtype, and permutations of 0..n-1."""
    check_tensor(perm, name)
    if perm.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(
            f"{name} must be an integer (long) tensor of shape (..., n), got dtype {perm.dtype}"
        )
    if perm.dim() < 1:
        raise ValueError(
            f"{name} must have shape (..., n) with at least one dimension, got a scalar"
        )
    n = perm.shape[-1]
    if perm.numel() == 0:
        return
    sorted_perm = perm.sort(dim=-1).values
    expected = torch.arange(n, device=perm.device, dtype=perm.dtype)
    if not (sorted_perm == expected).all():
        raise ValueError(
            f"{name} must hold permutations of 0..{n - 1} along its last axis "
            f"(each index exactly once), convention perm[i] = j means row i goes to column j"
        )


def check_enumerable(n, name="n"):
    """``n`` is a positive integer (a Python or NumPy integer, not a bool) small enough to
    enumerate all ``n!`` permutations; returns ``int(n)``."""
    n = check_size(n, name, "the number of items")
    if n > MAX_ENUMERATE_N:
        raise ValueError(
            f"{name}={n} is too large to enumerate all {name}! permutations "
            f"(limit {name} <= {MAX_ENUMERATE_N}); use sampling-based estimates instead"
        )
    return n
