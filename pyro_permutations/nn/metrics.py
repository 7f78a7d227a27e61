"""Evaluation metrics of [GS] Tables 1-2 for inferred permutations and reconstructions.

Permutations are integer tensors ``(..., n)`` in the library convention (``perm[i] = j``:
piece ``i`` goes to position ``j``); each metric averages over all leading dimensions and
returns a scalar tensor of the default floating dtype.
"""

import torch

from pyro_permutations.ops import kendall_tau
from pyro_permutations.ops._validation import broadcast_shapes, check_perm, check_tensor, is_int

__all__ = [
    "kendall_tau_mean",
    "l1_error",
    "l2_error",
    "prop_any_wrong",
    "prop_wrong",
    "prop_wrong_objects",
]


def _check_perms(inferred, true):
    check_perm(inferred, "inferred")
    check_perm(true, "true")
    if inferred.shape != true.shape:
        raise ValueError(
            f"inferred and true must have the same shape (..., n), got "
            f"{tuple(inferred.shape)} and {tuple(true.shape)}"
        )
    if inferred.numel() == 0:
        raise ValueError("inferred and true must not be empty")
    if inferred.device != true.device:
        raise ValueError(f"inferred is on {inferred.device} but true is on {true.device}")


def prop_wrong(inferred, true):
    """Proportion of positions assigned wrongly ("Prop. wrong" of [GS]).

    .. math:: \\frac{1}{B n} \\sum_{b, i} [\\, \\hat\\pi_b(i) \\ne \\pi_b(i) \\,]

    :param torch.Tensor inferred: integer permutations ``(..., n)``.
    :param torch.Tensor true: integer permutations ``(..., n)``.
    :returns: scalar tensor in ``[0, 1]``.

    Example::

        >>> prop_wrong(torch.tensor([[0, 1, 2], [1, 0, 2]]), torch.tensor([[0, 1, 2], [0, 1, 2]]))
        tensor(0.3333)
    """
    _check_perms(inferred, true)
    return (inferred != true).to(torch.get_default_dtype()).mean()


def prop_any_wrong(inferred, true):
    """Proportion of inputs with at least one wrong position ("Prop. any wrong" of [GS]).

    .. math:: \\frac{1}{B} \\sum_b \\big[\\, \\exists i: \\hat\\pi_b(i) \\ne \\pi_b(i) \\,\\big]

    :param torch.Tensor inferred: integer permutations ``(..., n)``.
    :param torch.Tensor true: integer permutations ``(..., n)``.
    :returns: scalar tensor in ``[0, 1]``.

    Example::

        >>> prop_any_wrong(torch.tensor([[0, 1, 2], [1, 0, 2]]), torch.tensor([[0, 1, 2]] * 2))
        tensor(0.5000)
    """
    _check_perms(inferred, true)
    return (inferred != true).any(dim=-1).to(torch.get_default_dtype()).mean()


def kendall_tau_mean(inferred, true):
    """Mean Kendall rank correlation between inferred and true permutations ([GS] Table 2).

    .. math::

        \\frac{1}{B} \\sum_b \\tau(\\hat\\pi_b, \\pi_b), \\qquad
        \\tau(p, q) = 1 - \\frac{4 \\, \\#\\{i < j : (p_i - p_j)(q_i - q_j) < 0\\}}{n (n - 1)},

    computed on the permutation vectors as given; each term equals
    ``scipy.stats.kendalltau(p, q).statistic`` (the statistic only, not the p-value). See
    :func:`~pyro_permutations.ops.kendall_tau`.

    :param torch.Tensor inferred: integer permutations ``(..., n)``, ``n >= 2``.
    :param torch.Tensor true: integer permutations ``(..., n)``.
    :returns: scalar tensor in ``[-1, 1]``.

    Example::

        >>> kendall_tau_mean(torch.tensor([[0, 1, 2], [2, 1, 0]]), torch.tensor([[0, 1, 2]] * 2))
        tensor(0.)
    """
    _check_perms(inferred, true)
    return kendall_tau(inferred, true).mean()


def _check_objects(reconstructed, ordered):
    check_tensor(reconstructed, "reconstructed")
    check_tensor(ordered, "ordered")
    broadcast_shapes("shapes", ("reconstructed", reconstructed.shape), ("ordered", ordered.shape))


def l1_error(reconstructed, ordered):
    """Mean absolute error of the reconstruction ("l1" of [GS] Table 2).

    .. math:: \\frac{1}{K} \\sum_k |\\hat X_k - X_k| \\quad \\text{over all } K \\text{ entries}

    :param torch.Tensor reconstructed: e.g. ``reconstruct(scrambled, inferred)``,
        ``(..., B, n, *piece_shape)``.
    :param torch.Tensor ordered: the true ordered objects; shapes broadcast.
    :returns: scalar tensor.

    Example::

        >>> l1_error(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
        tensor(1.)
    """
    _check_objects(reconstructed, ordered)
    return (reconstructed - ordered).abs().mean()


def l2_error(reconstructed, ordered):
    """Mean squared error of the reconstruction ("l2" of [GS] Table 2).

    .. math:: \\frac{1}{K} \\sum_k (\\hat X_k - X_k)^2 \\quad \\text{over all } K \\text{ entries}

    :param torch.Tensor reconstructed: e.g. ``reconstruct(scrambled, inferred)``,
        ``(..., B, n, *piece_shape)``.
    :param torch.Tensor ordered: the true ordered objects; shapes broadcast.
    :returns: scalar tensor.

    Example::

        >>> l2_error(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0]))
        tensor(2.)
    """
    _check_objects(reconstructed, ordered)
    return (reconstructed - ordered).pow(2).mean()


def prop_wrong_objects(reconstructed, ordered, object_dims):
    """Proportion of positions whose reconstructed object differs from the true one.

    .. math:: \\frac{1}{B n} \\sum_{b, j} [\\, \\hat X_{b, j} \\ne X_{b, j} \\,]

    where objects are compared entry by entry. It is :func:`prop_wrong` with swaps of identical
    objects counted right: two blank jigsaw pieces exchanged leave the picture unchanged, and
    no method can tell them apart, so this is the share of placements that are visibly wrong.
    With ``reconstructed = reconstruct(scrambled, inferred)`` it is at most
    ``prop_wrong(inferred, true)``, with equality when the objects of each input are distinct.

    :param torch.Tensor reconstructed: ``(..., n, *object_shape)``, e.g.
        ``reconstruct(scrambled, inferred)``.
    :param torch.Tensor ordered: the true ordered objects, the same shape.
    :param int object_dims: the number of trailing dimensions of one object (3 for image
        pieces ``(C, h, w)``, 0 for scalars).
    :returns: scalar tensor in ``[0, 1]``.

    Example::

        >>> ordered = torch.tensor([[0.0, 0.0, 5.0]])  # two identical objects, then a 5
        >>> prop_wrong_objects(torch.tensor([[0.0, 0.0, 5.0]]), ordered, object_dims=0)
        tensor(0.)
        >>> prop_wrong_objects(torch.tensor([[0.0, 5.0, 0.0]]), ordered, object_dims=0)
        tensor(0.6667)
    """
    _check_objects(reconstructed, ordered)
    if reconstructed.shape != ordered.shape:
        raise ValueError(
            f"reconstructed {tuple(reconstructed.shape)} and ordered {tuple(ordered.shape)} "
            "must have the same shape"
        )
    if not is_int(object_dims) or not 0 <= object_dims < reconstructed.dim():
        raise ValueError(
            f"object_dims must be an int in [0, {reconstructed.dim() - 1}] for a tensor of "
            f"shape {tuple(reconstructed.shape)} (which needs a position axis), got "
            f"{object_dims!r}"
        )
    object_dims = int(object_dims)
    if reconstructed.numel() == 0:
        raise ValueError("reconstructed and ordered must not be empty")
    differs = reconstructed != ordered
    if object_dims:
        differs = differs.flatten(-object_dims).any(dim=-1)
    return differs.to(torch.get_default_dtype()).mean()
