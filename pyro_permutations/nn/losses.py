"""The reconstruction loss of a Sinkhorn network ([GS] section 3)."""

from pyro_permutations.nn.sinkhorn_network import reconstruct

__all__ = ["reconstruction_loss"]


def reconstruction_loss(ordered, scrambled, P):
    """Mean squared error between the ordered objects and their reconstruction ``P^T x``.

    .. math::

        L = \\frac{1}{S B n D} \\sum_{s, b, j} \\big\\| X_{bj} -
            \\textstyle\\sum_i P_{s b i j} \\tilde X_{bi} \\big\\|^2

    over ``S`` samples of ``P``, ``B`` inputs, ``n`` positions and ``D`` entries per piece.
    [GS] section 3 minimises the sum :math:`\\sum_i \\|X_i - P^T \\tilde X_i\\|^2`; the mean
    differs by the constant factor only. Convention: scrambled piece ``i`` belongs at position
    ``perm[i]``, ``P[i, perm[i]] = 1`` (see :func:`~pyro_permutations.nn.reconstruct`).

    :param torch.Tensor ordered: target objects ``(B, n, *piece_shape)``.
    :param torch.Tensor scrambled: input pieces ``(B, n, *piece_shape)``.
    :param torch.Tensor P: soft matrices ``(..., B, n, n)`` (e.g. the ``(S, B, n, n)``
        training output of :class:`~pyro_permutations.nn.SinkhornNetwork`) or hard
        permutations ``(..., B, n)``; leading sample dimensions broadcast against ``ordered``.
    :returns: scalar tensor.

    Example::

        >>> import torch
        >>> from pyro_permutations.ops import perm_to_matrix
        >>> ordered = torch.tensor([[[1.0], [2.0], [3.0]]])
        >>> scrambled = torch.tensor([[[3.0], [1.0], [2.0]]])
        >>> P = perm_to_matrix(torch.tensor([[2, 0, 1]]))
        >>> reconstruction_loss(ordered, scrambled, P)
        tensor(0.)
    """
    if ordered.shape != scrambled.shape:
        raise ValueError(
            f"ordered and scrambled must have the same shape (B, n, *piece_shape), got "
            f"{tuple(ordered.shape)} and {tuple(scrambled.shape)}"
        )
    return (reconstruct(scrambled, P) - ordered).pow(2).mean()
