"""Distances and divergences between pmfs over permutations (or any finite set)."""

import torch

from pyro_permutations.ops._validation import broadcast_shapes, check_floating

__all__ = [
    "bhattacharyya_coefficient",
    "bhattacharyya_distance",
    "hellinger_distance",
    "kl_divergence_pmf",
    "total_variation_distance",
]

_ATOL = 1e-6


def _check_pmfs(p, q):
    """``p`` and ``q`` are pmfs ``(..., K)`` on one device over the same ``K`` outcomes whose
    batch shapes broadcast; returns them in their common dtype."""
    for name, x in (("p", p), ("q", q)):
        if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
            raise ValueError(f"{name} must be a floating tensor of probabilities (..., K)")
        check_floating(x, name)  # float16 and bfloat16 are refused, as by every computation
    if p.device != q.device:
        raise ValueError(f"p is on {p.device} but q is on {q.device}; move them to one device")
    for name, x in (("p", p), ("q", q)):
        if x.dim() < 1:
            raise ValueError(f"{name} must have at least one dimension (..., K)")
        if torch.isnan(x).any() or (x < 0).any():
            raise ValueError(f"{name} must hold non-negative probabilities (found NaN or < 0)")
        if ((x.sum(-1) - 1).abs() > _ATOL * max(1, x.shape[-1]) ** 0.5 + 1e-6).any():
            raise ValueError(
                f"{name} must sum to one along its last axis (got sums "
                f"{x.sum(-1).flatten()[:4].tolist()}...); normalise it first"
            )
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(
            f"p and q must be pmfs over the same set, got sizes {p.shape[-1]} and {q.shape[-1]}"
        )
    broadcast_shapes("batch shapes", ("p", p.shape[:-1]), ("q", q.shape[:-1]))
    dtype = torch.promote_types(p.dtype, q.dtype)
    return p.to(dtype), q.to(dtype)


def bhattacharyya_coefficient(p, q):
    """``BC(p, q) = sum_k sqrt(p_k q_k)``, in ``[0, 1]``; shape ``(...)``."""
    p, q = _check_pmfs(p, q)
    return torch.sqrt(p * q).sum(-1).clamp(max=1.0)


def bhattacharyya_distance(p, q):
    """Bhattacharyya distance ``D_B(p, q) = -log BC(p, q)``, in ``[0, inf]``.

    .. math:: D_B(p, q) = -\\log \\sum_k \\sqrt{p_k q_k}

    Note: the "Bhattacharyya distance" reported in [BP] Table 1 is in fact the Hellinger
    distance ``sqrt(1 - BC)`` (bounded by one); see :func:`hellinger_distance`.

    Example::

        >>> import torch
        >>> p = torch.tensor([0.5, 0.5, 0.0])
        >>> bhattacharyya_distance(p, p)
        tensor(-0.)
    """
    return -torch.log(bhattacharyya_coefficient(p, q))


def hellinger_distance(p, q):
    """Hellinger distance ``H(p, q) = sqrt(1 - BC(p, q))``, in ``[0, 1]``.

    .. math::

        H(p, q) = \\sqrt{1 - \\sum_k \\sqrt{p_k q_k}}
                = \\tfrac{1}{\\sqrt 2} \\big\\| \\sqrt p - \\sqrt q \\big\\|_2

    This is the quantity [BP] Table 1 reports under the name "Bhattacharyya distance" (BD):
    its reference notebook computes ``sqrt(1 - sum sqrt(p q))``, and its Mallows rows approach
    one, which ``-log BC`` would not.

    Example::

        >>> import torch
        >>> hellinger_distance(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
        tensor(1.)
    """
    return torch.sqrt((1 - bhattacharyya_coefficient(p, q)).clamp(min=0.0))


def total_variation_distance(p, q):
    """Total variation distance ``TV(p, q) = 1/2 sum_k |p_k - q_k|``, in ``[0, 1]``.

    Example::

        >>> import torch
        >>> total_variation_distance(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]))
        tensor(0.5000)
    """
    p, q = _check_pmfs(p, q)
    return 0.5 * (p - q).abs().sum(-1)


def kl_divergence_pmf(p, q):
    """Kullback-Leibler divergence ``KL(p || q) = sum_k p_k log(p_k / q_k)``, in ``[0, inf]``.

    Terms with ``p_k = 0`` are zero; a ``p_k > 0`` where ``q_k = 0`` makes it ``inf``.

    Example::

        >>> import torch
        >>> kl_divergence_pmf(torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5]))
        tensor(0.)
    """
    p, q = _check_pmfs(p, q)
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p))
    return terms.sum(-1)
