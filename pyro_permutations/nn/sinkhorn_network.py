"""The permutation-equivariant Sinkhorn network of [GS] section 3."""

import numbers

import torch

from pyro_permutations.ops import invert_perm, log_sinkhorn, matching, sample_gumbel
from pyro_permutations.ops._validation import check_perm, check_size, check_tensor

__all__ = ["SinkhornNetwork", "reconstruct"]


def _real(value, name, positive=True):
    """``value`` is a real number (Python or NumPy, not a bool), positive or non-negative;
    returns ``float(value)``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and (value > 0 if positive else value >= 0)):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a {kind} real number, got {value!r}")
    return float(value)


def _check_pieces(x, n, name="x"):
    check_tensor(x, name)
    if x.dim() < 2 or x.shape[1] != n:
        raise ValueError(
            f"{name} must have shape (B, n, *piece_shape) with n={n} pieces on axis 1, "
            f"got shape {tuple(x.shape)}"
        )


def reconstruct(x, P):
    """Put scrambled pieces in order: ``P^T x`` over the piece axis.

    Scrambled piece ``i`` belongs at position ``perm[i]`` (the library convention,
    ``P[i, perm[i]] = 1``), so the ordered objects are

    .. math::

        \\mathrm{ordered}_j = \\sum_i P_{ij} \\, x_i, \\qquad
        \\text{i.e. } \\mathrm{ordered}_{\\mathrm{perm}(i)} = x_i \\text{ for a permutation.}

    For a soft (doubly-stochastic) ``P`` position ``j`` gets the ``P[:, j]``-weighted average
    of the pieces; this is the reconstruction in the loss of [GS] section 3.

    :param torch.Tensor x: scrambled pieces of shape ``(B, n, *piece_shape)``.
    :param torch.Tensor P: either soft or exact matrices, floating, of shape
        ``(..., B, n, n)``, or hard permutations, integer, of shape ``(..., B, n)``; extra
        leading dimensions (e.g. Gumbel samples) broadcast. Hard permutations may be on any
        device (they are moved to ``x``'s, as in :func:`~pyro_permutations.nn.scramble`).
    :returns: the ordered objects, shape ``(..., B, n, *piece_shape)``: with hard
        permutations, pieces of ``x`` (its dtype and device); with matrices, of the dtype
        promoted from ``x``'s and ``P``'s (float64 pieces stay float64 with a float32 ``P``).

    Example::

        >>> x = torch.tensor([[30.0, 10.0, 20.0]]).unsqueeze(-1)  # (B=1, n=3, 1)
        >>> reconstruct(x, torch.tensor([[2, 0, 1]])).squeeze(-1)
        tensor([[10., 20., 30.]])
    """
    check_tensor(x, "x")
    check_tensor(P, "P")
    hard = not (P.dtype.is_floating_point or P.dtype.is_complex)
    if hard:
        check_perm(P, "P")
        batch, n = P.shape[:-1], P.shape[-1]
    else:
        if P.dim() < 3 or P.shape[-1] != P.shape[-2]:
            raise ValueError(f"a soft P must have shape (..., B, n, n), got shape {tuple(P.shape)}")
        batch, n = P.shape[:-2], P.shape[-1]
    _check_pieces(x, n)
    if batch[-1:] != x.shape[:1]:
        raise ValueError(
            f"P's batch axis {tuple(batch[-1:])} must match x's {tuple(x.shape[:1])} "
            f"(P of shape {tuple(P.shape)}, x of shape {tuple(x.shape)})"
        )
    piece_shape = x.shape[2:]
    flat = x.reshape(x.shape[:2] + (-1,))  # (B, n, D)
    if hard:
        # ordered[j] = x[inverse[j]]: gather keeps any dtype and is exact.
        index = invert_perm(P.long().to(x.device))
        index = index.unsqueeze(-1).expand(batch + (n, flat.shape[-1]))
        out = torch.gather(flat.expand(batch + flat.shape[1:]), -2, index)
    else:
        dtype = torch.promote_types(P.dtype, x.dtype)
        out = P.transpose(-1, -2).to(dtype) @ flat.to(dtype)
    return out.reshape(out.shape[:-1] + piece_shape)


class SinkhornNetwork(torch.nn.Module):
    """Permutation-equivariant Sinkhorn network of [GS] section 3.

    A shared per-piece network ``g1`` (``piece_net``) maps each of the ``n`` scrambled pieces
    to features, and a linear head ``g2`` maps each piece's features to one row of ``n``
    scores; pieces interact only through the Sinkhorn operator (unless ``context=True``):

    .. math::

        X_{ij} = g_2(g_1(\\tilde x_i))_j, \\qquad
        P = S\\big((X + \\eta \\, \\epsilon) / \\tau\\big), \\quad
        \\epsilon_{ij} \\sim \\mathrm{Gumbel}(0, 1),

    with temperature ``tau`` and noise factor ``eta``.

    **Set context** (``context=True``, ours, not in [GS]). Each piece's features are joined
    with the mean features of its puzzle, in the manner of Deep Sets (Zaheer et al., 2017),
    and mixed by a hidden layer before the head:

    .. math::

        h_i = g_1(\\tilde x_i), \\qquad \\bar h = \\frac1n \\sum_k h_k, \\qquad
        X_{ij} = g_2\\big(\\mathrm{relu}(W [h_i; \\bar h] + b)\\big)_j .

    A piece is then scored knowing what the other pieces look like (which digit, say), and
    the network stays permutation-equivariant, since ``h_bar`` does not depend on the order
    of the pieces. The hidden layer is needed: a linear ``g2`` of ``[h_i; h_bar]`` would only
    add a constant to each column of ``X``, which says nothing about where each piece goes (the
    matching operator ignores it; the Sinkhorn operator removes it at convergence).

    Row ``i`` of ``X`` (``log_alpha``)
    scores where scrambled piece ``i`` goes: ``X[i, j]`` for position ``j``, the library
    convention ``P[i, perm[i]] = 1``. At test time the hard permutation is ``M(X)``
    (:func:`~pyro_permutations.ops.matching`). The ordered objects are ``P^T x`` (see
    :func:`reconstruct`), and training minimises :func:`reconstruction_loss`.

    **Equivariance.** Permuting the input pieces, ``x'[i] = x[sigma[i]]`` (``x' = Q x`` with
    ``Q = perm_to_matrix(sigma)``), permutes the rows: ``scores(x') = Q scores(x)``, the
    eval-mode output becomes ``perm'[i] = perm[sigma[i]]`` (``compose_perms(sigma, perm)``,
    barring ties), and the reconstruction is unchanged.

    **Modes.** In training mode, :meth:`forward` returns ``samples_per_input`` soft
    permutation matrices per input, shape ``(S, B, n, n)``; in eval mode, hard permutations
    ``M(X)``, a long tensor ``(B, n)``, without noise.

    :param torch.nn.Module piece_net: ``g1``, mapping a batch of pieces ``(m, *piece_shape)``
        to features ``(m, feature_dim)``; it is called on all ``B * n`` pieces at once.
    :param int n: number of pieces (and positions).
    :param int feature_dim: output size of ``piece_net``.
    :param float temperature: ``tau > 0``.
    :param float noise_factor: ``eta >= 0``, scale of the Gumbel noise in training.
    :param int samples_per_input: ``S``, Gumbel-Sinkhorn samples per input in training.
    :param int n_iters: if given, that many plain Sinkhorn sweeps (10-20 in [GS]'s code);
        otherwise iterate to the marginal error ``tol`` (see
        :func:`~pyro_permutations.ops.log_sinkhorn`).
    :param float tol: Sinkhorn tolerance, used when ``n_iters`` is None.
    :param bool context: score each piece with the puzzle's mean features too (see *Set
        context*); default False, the network of [GS].

    Example (sorting numbers: pieces of shape ``(1,)``)::

        >>> _ = torch.manual_seed(0)
        >>> g1 = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.ReLU())
        >>> net = SinkhornNetwork(g1, n=5, feature_dim=32, samples_per_input=3, n_iters=10)
        >>> x = torch.rand(4, 5, 1)
        >>> net(x).shape  # training mode: soft permutations
        torch.Size([3, 4, 5, 5])
        >>> net.eval()(x).shape  # eval mode: hard permutations
        torch.Size([4, 5])

    References:

    [GS] Mena, Belanger, Linderman, Snoek. Learning Latent Permutations with Gumbel-Sinkhorn
    Networks. ICLR 2018, section 3.
    """

    #: Whether pieces are scored with their puzzle's mean features (see *Set context*).
    context = False

    def __init__(
        self,
        piece_net,
        n,
        feature_dim,
        temperature=1.0,
        noise_factor=1.0,
        samples_per_input=1,
        n_iters=None,
        tol=1e-5,
        context=False,
    ):
        super().__init__()
        if not isinstance(context, bool):
            raise ValueError(f"context must be True or False, got {context!r}")
        if not isinstance(piece_net, torch.nn.Module):
            raise ValueError(f"piece_net must be a torch.nn.Module, got {type(piece_net)}")
        n = check_size(n, "n", "the number of pieces")
        feature_dim = check_size(feature_dim, "feature_dim", "the output size of piece_net")
        temperature = _real(temperature, "temperature")
        noise_factor = _real(noise_factor, "noise_factor", positive=False)
        samples_per_input = check_size(
            samples_per_input, "samples_per_input", "Gumbel-Sinkhorn samples per input"
        )
        if n_iters is not None:
            n_iters = check_size(n_iters, "n_iters", "Sinkhorn sweeps, or None for tol")
        tol = _real(tol, "tol")
        self.piece_net = piece_net
        if context:  # registered only with context, so older checkpoints still load
            self.mix = torch.nn.Sequential(
                torch.nn.Linear(2 * feature_dim, feature_dim), torch.nn.ReLU()
            )
        self.head = torch.nn.Linear(feature_dim, n)
        self.context = context
        self.n = n
        self.feature_dim = feature_dim
        self.temperature = temperature
        self.noise_factor = noise_factor
        self.samples_per_input = samples_per_input
        self.n_iters = n_iters
        self.tol = tol

    def extra_repr(self):
        return (
            f"n={self.n}, feature_dim={self.feature_dim}, temperature={self.temperature}, "
            f"noise_factor={self.noise_factor}, samples_per_input={self.samples_per_input}, "
            f"n_iters={self.n_iters}, tol={self.tol}, context={self.context}"
        )

    def scores(self, x):
        """Scores ``log_alpha = g2(g1(x))`` (with ``context``, see the class docstring): row
        ``i`` for piece ``i``, column ``j`` for position ``j``.

        :param torch.Tensor x: scrambled pieces ``(B, n, *piece_shape)``.
        :returns: ``log_alpha`` of shape ``(B, n, n)``.
        """
        _check_pieces(x, self.n)
        batch = x.shape[0]
        features = self.piece_net(x.reshape((batch * self.n,) + x.shape[2:]))
        if features.shape != (batch * self.n, self.feature_dim):
            raise ValueError(
                f"piece_net must map pieces (m, *piece_shape) to (m, feature_dim="
                f"{self.feature_dim}), got {tuple(features.shape)} for m={batch * self.n}"
            )
        features = features.reshape(batch, self.n, self.feature_dim)
        if self.context:
            mean = features.mean(dim=1, keepdim=True).expand_as(features)
            features = self.mix(torch.cat([features, mean], dim=-1))
        return self.head(features)

    def soft_perms(self, log_alpha):
        """Gumbel-Sinkhorn samples ``S((log_alpha + eta eps) / tau)``, shape ``(S, B, n, n)``."""
        shape = (self.samples_per_input,) + log_alpha.shape
        noise = sample_gumbel(shape, dtype=log_alpha.dtype, device=log_alpha.device)
        z = (log_alpha + self.noise_factor * noise) / self.temperature
        return log_sinkhorn(z, n_iters=self.n_iters, tol=self.tol).exp()

    def forward(self, x):
        """Soft permutation matrices ``(S, B, n, n)`` in training mode, hard permutations
        ``(B, n)`` (long) in eval mode.

        :param torch.Tensor x: scrambled pieces ``(B, n, *piece_shape)``.
        """
        log_alpha = self.scores(x)
        if self.training:
            return self.soft_perms(log_alpha)
        return matching(log_alpha)

    def reconstruct(self, x, P=None):
        """Ordered objects ``P^T x`` (see :func:`reconstruct`); ``P`` defaults to ``self(x)``.

        :returns: ``(S, B, n, *piece_shape)`` in training mode, ``(B, n, *piece_shape)`` in
            eval mode (or the shape that ``P`` gives).
        """
        if P is None:
            P = self(x)
        return reconstruct(x, P)
