"""Argument checks shared by the tensor operations.

Every check raises :class:`ValueError` (or :class:`TypeError` for an argument of the wrong
type) whose message names the argument, says what is wrong and what to do instead.

**Floating dtypes.** One policy everywhere: numerical computations (the Sinkhorn and matching
solvers, the distributions' parameters and densities, the pmf distances) take float32 or
float64 and refuse float16 and bfloat16 with a ``ValueError`` that says to convert (their
rounding, about ``1e-3`` and ``1e-2``, is coarser than the tolerances the solvers and
normalisation checks work to). Exact conversions whose results are 0, 1 or indices
(``perm_to_matrix``, ``matrix_to_perm``) accept any floating dtype.
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


def check_temperature(temperature, name="temperature"):
    """``temperature`` is a positive finite number (a Python or NumPy real, not a bool) or a
    floating tensor of positive finite entries; returns a number as a ``float``, a tensor
    unchanged. A ``TypeError`` for any other type (a string, say), a ``ValueError`` for a value
    that is zero, negative, infinite or NaN."""
    if isinstance(temperature, torch.Tensor):
        if not temperature.dtype.is_floating_point:
            raise TypeError(
                f"{name} must be a positive float or a floating tensor, got a tensor of dtype "
                f"{temperature.dtype}; convert it with {name}.float()"
            )
        ok = (temperature > 0) & torch.isfinite(temperature)
        if not bool(ok.all()):
            bad = temperature.detach()[~ok].flatten()[0].item()
            raise ValueError(
                f"{name} must be positive and finite everywhere, got an entry {bad}; a "
                f"temperature is a positive scale (small values give near-permutations)"
            )
        return temperature
    if isinstance(temperature, numbers.Real) and not isinstance(temperature, bool):
        if not 0 < temperature < float("inf"):
            raise ValueError(
                f"{name} must be a positive finite number, got {temperature!r}; a temperature "
                f"is a positive scale (small values give near-permutations)"
            )
        return float(temperature)
    raise TypeError(
        f"{name} must be a positive float or a floating tensor, got "
        f"{type(temperature).__name__} {temperature!r}"
    )


def check_number_or_tensor(x, name, what):
    """``x`` is a real number (not a bool) or a tensor; a ``TypeError`` naming ``name`` and
    saying what it is (``what``, e.g. ``"a dispersion theta >= 0"``) otherwise."""
    if isinstance(x, torch.Tensor) or (isinstance(x, numbers.Real) and not isinstance(x, bool)):
        return x
    raise TypeError(
        f"{name} must be a number or a floating tensor ({what}), got {type(x).__name__} {x!r}"
    )


def check_expand(owner, batch_shape, new_shape):
    """``new_shape`` is a batch shape that ``batch_shape`` expands to, as for
    ``Tensor.expand``: at least as many dimensions, and each existing dimension (aligned from the
    right) equal to the new size or 1. Returns ``torch.Size(new_shape)``; ``owner`` names the
    distribution for the message."""
    try:
        new_shape = torch.Size(new_shape)
    except TypeError:
        raise TypeError(
            f"{owner}.expand needs a batch shape (a tuple of ints), got {new_shape!r}"
        ) from None
    ok = len(new_shape) >= len(batch_shape) and all(s >= 0 for s in new_shape)
    if ok:
        tail = new_shape[len(new_shape) - len(batch_shape) :]
        ok = all(old == new or old == 1 for old, new in zip(batch_shape, tail))
    if not ok:
        raise ValueError(
            f"cannot expand {owner} of batch_shape {tuple(batch_shape)} to batch_shape "
            f"{tuple(new_shape)}: a dimension can only grow from size 1 (aligned from the "
            f"right), and no dimension can be removed"
        )
    return new_shape


def check_event_shape(value, event_shape, owner):
    """``value``'s rightmost dimensions are ``event_shape``; a ``ValueError`` naming both
    otherwise (checked whether or not the distribution validates its arguments)."""
    check_tensor(value, "value")
    k = len(event_shape)
    if value.dim() < k or tuple(value.shape[value.dim() - k :]) != tuple(event_shape):
        raise ValueError(
            f"value has shape {tuple(value.shape)}, but {owner} has event_shape "
            f"{tuple(event_shape)}: the value's rightmost dimensions must be "
            f"{tuple(event_shape)} (any batch dimensions before them)"
        )


def empty_log_prob(value, event_shape, batch_shape, dtype=None):
    """For a value with no elements, the log-probabilities it has (none): zeros of the
    broadcast of its batch shape with ``batch_shape``; ``None`` for any other value. (Torch's
    reductions over event dimensions cannot reshape an empty tensor.)"""
    if value.numel() != 0:
        return None
    shape = broadcast_shapes(
        "batch shapes",
        ("value", value.shape[: value.dim() - len(event_shape)]),
        ("batch_shape", batch_shape),
    )
    dtype = dtype or (value.dtype if value.dtype.is_floating_point else torch.get_default_dtype())
    return torch.zeros(shape, dtype=dtype, device=value.device)


def check_square(x, name):
    """``x`` has shape ``(..., N, N)`` with ``N >= 1``."""
    check_tensor(x, name)
    if x.dim() < 2 or x.shape[-1] != x.shape[-2] or x.shape[-1] == 0:
        raise ValueError(
            f"{name} must have shape (..., N, N) with N >= 1 (a batch of square matrices), "
            f"got shape {tuple(x.shape)}"
        )


def check_matrix(x, name):
    """``x`` has shape ``(..., N, M)`` with ``N, M >= 1``."""
    check_tensor(x, name)
    if x.dim() < 2 or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(
            f"{name} must have shape (..., N, M) with N, M >= 1 (a batch of matrices), "
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


def check_finite(x, name):
    """``x`` holds no NaN or infinity (checked whatever ``validate_args``)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"{name} contains NaN or +-inf; it must be finite (a location far from the others "
            f"needs a large, finite value)"
        )


def check_no_nan(x, name):
    """``x`` holds no NaN."""
    if torch.isnan(x).any():
        raise ValueError(f"{name} contains NaN; check the computation that produced it")


def check_scores(x, name, allow_neg_inf=False, square=True):
    """``x`` is a floating batch of square (or, unless ``square``, rectangular ``(..., N, M)``)
    score matrices without NaN or ``+inf``.

    ``-inf`` entries (forbidden pairs) are allowed only when ``allow_neg_inf``.
    """
    check_floating(x, name)
    if square:
        check_square(x, name)
    else:
        check_matrix(x, name)
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
