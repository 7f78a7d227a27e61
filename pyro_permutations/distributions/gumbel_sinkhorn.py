"""The Gumbel-Sinkhorn distribution: a reparameterised relaxation of Gumbel-Matching."""

import math

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.kl import register_kl

from pyro_permutations.constraints import birkhoff, column_stochastic
from pyro_permutations.ops import log_sinkhorn, matching, perm_to_matrix, sample_gumbel
from pyro_permutations.ops._validation import (
    broadcast_shapes,
    check_event_shape,
    check_expand,
    check_scores,
    check_temperature,
)
from pyro_permutations.ops.sinkhorn import _check_options, check_feasible_scores

__all__ = [
    "GumbelSinkhorn",
    "GumbelSinkhornStraightThrough",
    "attach_scores",
    "perturbed_scores",
]

#: Name of the attribute by which a sampled matrix carries its perturbed scores ``Z``
#: (as Pyro's straight-through distributions carry ``_unquantize``).
SCORES_ATTR = "_gumbel_sinkhorn_scores"


def attach_scores(value, scores):
    """Mark ``value`` (a matrix ``S(Z)``) as produced from the perturbed scores ``Z``."""
    setattr(value, SCORES_ATTR, scores)
    return value


def perturbed_scores(value):
    """The perturbed scores ``Z`` behind a value drawn from a :class:`GumbelSinkhorn`, or
    ``None`` if ``value`` does not carry them."""
    return getattr(value, SCORES_ATTR, None)


class GumbelSinkhorn(TorchDistribution):
    """Gumbel-Sinkhorn distribution over the Birkhoff polytope [GS].

    A sample is the Sinkhorn operator applied to Gumbel-perturbed, tempered scores:

    .. math::

        Z = (X + \\epsilon) / \\tau, \\quad \\epsilon_{ij} \\sim \\mathrm{Gumbel}(0, 1)
        \\text{ iid}, \\qquad P = S(Z),

    so ``P -> M(X + eps)`` (a :class:`GumbelMatching` sample) as ``tau -> 0``. ``P`` is doubly
    stochastic to the tolerance ``tol`` (rows index items, columns positions: ``P[i, j]`` is the
    weight of row ``i`` going to column ``j``, the convention of ``perm_to_matrix``); with a
    fixed number ``n_iters`` of sweeps only its columns sum exactly to one (see
    :attr:`support`). ``rsample`` is reparameterised: gradients flow to ``log_alpha`` and
    ``temperature`` through the Sinkhorn operator (implicitly differentiated by default).

    **Density.** ``S`` is invariant to adding a constant to a row or a column, so the density
    of ``P`` itself has no closed form. As in [GS] section 4, the latent variable is the
    perturbed score matrix ``Z``, with exact density

    .. math::

        \\log q(Z) = \\sum_{ij: X_{ij} > -\\infty} \\log \\tau - (\\tau Z_{ij} - X_{ij})
                     - e^{-(\\tau Z_{ij} - X_{ij})},

    i.e. ``Z_ij ~ Gumbel(loc = X_ij / tau, scale = 1 / tau)`` at every allowed pair, while a
    forbidden pair (``X_ij = -inf``) has ``Z_ij = -inf`` (so ``P_ij = 0``) and adds nothing. A
    value whose ``Z`` is finite at a forbidden pair, or ``-inf`` at an allowed one, has density
    zero: ``log_prob`` is ``-inf``.

    A matrix drawn by :meth:`rsample` carries its ``Z`` (see :func:`perturbed_scores`), and
    :meth:`log_prob` of such a matrix is the density of its ``Z``; so a Pyro model with a
    ``GumbelSinkhorn`` prior and a ``GumbelSinkhorn`` guide gives ``Trace_ELBO`` the ELBO in
    ``Z``-space, which bounds the ELBO in ``P``-space (data processing), and
    ``TraceMeanField_ELBO`` the closed-form KL registered below (summed over the pairs allowed
    by both; ``+inf`` if a pair is forbidden in only one of them, so give model and guide the
    same forbidden pairs). ``log_prob`` of a bare matrix raises a ``ValueError``.

    :param torch.Tensor log_alpha: scores ``X`` of shape ``(..., N, N)``; ``-inf`` entries
        are forbidden pairs (they stay ``-inf`` in ``Z``, are zero in ``P`` and add nothing to
        the density; see above). With ``validate_args`` a mask that no permutation avoids is
        refused here (``ValueError``), not at the first sample.
    :param temperature: ``tau``, positive and finite, a float or a tensor broadcastable to the
        batch shape; it takes ``log_alpha``'s dtype and device.
    :param float tol: Sinkhorn's marginal-error tolerance, ``> 0`` (see :func:`log_sinkhorn`).
    :param int n_iters: if given, that many plain Sinkhorn sweeps instead (``>= 1``, as in
        [GS]); the rows of ``P`` are then normalised only approximately, and :attr:`support` is
        :data:`~pyro_permutations.constraints.column_stochastic` instead of
        :data:`~pyro_permutations.constraints.birkhoff`.
    :param str grad: ``"implicit"`` or ``"unrolled"`` (see :func:`log_sinkhorn`).
    :raises ValueError: if ``log_alpha`` is not a floating batch of square matrices (NaN and
        ``+inf`` refused), ``temperature`` is not positive and finite, or ``tol``, ``n_iters``
        or ``grad`` is invalid (checked here, whatever ``validate_args``, not when sampling).
    :raises TypeError: if ``temperature`` is neither a number nor a floating tensor.

    Shapes: ``batch_shape = broadcast(log_alpha.shape[:-2], temperature.shape)``,
    ``event_shape = (N, N)``.

    Example::

        >>> import torch
        >>> from pyro_permutations.distributions import GumbelSinkhorn
        >>> d = GumbelSinkhorn(torch.zeros(3, 4, 4), temperature=0.5)
        >>> p = d.rsample()
        >>> p.shape, bool(torch.allclose(p.sum(-1), torch.ones(3, 4), atol=1e-4))
        (torch.Size([3, 4, 4]), True)
        >>> d.log_prob(p).shape
        torch.Size([3])

    References:

    [GS] Mena, Belanger, Linderman, Snoek. Learning Latent Permutations with Gumbel-Sinkhorn
    Networks. ICLR 2018, sections 2-4.
    """

    arg_constraints = {
        "log_alpha": constraints.independent(constraints.real, 2),
        "temperature": constraints.positive,
    }
    has_rsample = True

    def __init__(
        self, log_alpha, temperature, *, tol=1e-5, n_iters=None, grad=None, validate_args=None
    ):
        check_scores(log_alpha, "log_alpha", allow_neg_inf=True)
        temperature = check_temperature(temperature)
        _check_options(tol, 1, n_iters, grad)
        if not isinstance(temperature, torch.Tensor):
            temperature = torch.tensor(temperature, dtype=log_alpha.dtype, device=log_alpha.device)
        batch_shape = broadcast_shapes(
            "batch shapes",
            ("log_alpha", log_alpha.shape[:-2]),
            ("temperature", temperature.shape),
        )
        event_shape = log_alpha.shape[-2:]
        self.log_alpha = log_alpha.expand(batch_shape + event_shape)
        self.temperature = temperature.to(dtype=log_alpha.dtype, device=log_alpha.device).expand(
            batch_shape
        )
        self.tol, self.n_iters, self.grad = tol, n_iters, grad
        # The arguments are checked above (torch's check of an independent constraint fails on
        # an empty batch), so torch's own check is skipped.
        super().__init__(batch_shape, event_shape, validate_args=False)
        if validate_args is not None:
            self._validate_args = validate_args
        if self._validate_args:  # an infeasible mask of -inf pairs is reported here
            check_feasible_scores(log_alpha)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GumbelSinkhorn, _instance)
        batch_shape = check_expand(type(self).__name__, self.batch_shape, batch_shape)
        new.log_alpha = self.log_alpha.expand(batch_shape + self.event_shape)
        new.temperature = self.temperature.expand(batch_shape)
        new.tol, new.n_iters, new.grad = self.tol, self.n_iters, self.grad
        super(GumbelSinkhorn, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @classmethod
    def infer_shapes(cls, log_alpha, temperature=(), tol=(), n_iters=(), grad=(), validate_args=()):
        """``(batch_shape, event_shape)`` for arguments of the given shapes; the options
        (``tol``, ``n_iters``, ``grad``, ``validate_args``) do not change them."""
        batch_shape = torch.broadcast_shapes(torch.Size(log_alpha[:-2]), torch.Size(temperature))
        return batch_shape, torch.Size(log_alpha[-2:])

    @property
    def support(self):
        """:data:`~pyro_permutations.constraints.birkhoff` when stopping on ``tol``;
        :data:`~pyro_permutations.constraints.column_stochastic` with ``n_iters`` sweeps
        (which end on the columns, so the rows sum to one only approximately)."""
        if self.n_iters is None:
            return birkhoff
        return column_stochastic

    def _tau(self):
        return self.temperature[..., None, None]

    def sample_scores(self, sample_shape=torch.Size()):
        """Draw the perturbed scores ``Z = (X + eps) / tau``, shape ``sample_shape + batch +
        (N, N)``, differentiable in ``log_alpha`` and ``temperature``."""
        shape = self._extended_shape(sample_shape)
        eps = sample_gumbel(shape, dtype=self.log_alpha.dtype, device=self.log_alpha.device)
        # Forbidden pairs are set to -inf after the division: -inf / tau would give the
        # temperature a NaN gradient (0 * inf) there.
        forbidden = torch.isneginf(self.log_alpha)
        scores = (self.log_alpha.masked_fill(forbidden, 0.0) + eps) / self._tau()
        return scores.masked_fill(forbidden, -math.inf)

    def scores_to_matrix(self, scores):
        """``S(Z)`` with this distribution's Sinkhorn options, carrying ``Z``."""
        log_p = log_sinkhorn(
            scores,
            tol=self.tol,
            n_iters=self.n_iters,
            grad=self.grad,
            validate=bool(self._validate_args),
        )
        return attach_scores(log_p.exp(), scores)

    def rsample(self, sample_shape=torch.Size()):
        return self.scores_to_matrix(self.sample_scores(sample_shape))

    def log_prob_scores(self, scores):
        """Exact log-density of perturbed scores ``Z`` (shape ``(..., N, N)``), summed over the
        ``N x N`` entries.

        A forbidden pair (``log_alpha = -inf``) has ``Z = -inf`` almost surely: where ``Z`` is
        ``-inf`` too the entry contributes nothing, where ``Z`` is finite the density is zero
        (``-inf``). Conversely ``Z = -inf`` at an allowed pair has zero density (``-inf``).
        """
        tau = self._tau()
        forbidden = torch.isneginf(self.log_alpha)
        absent = torch.isneginf(scores)
        # Masked before the arithmetic, so that no gradient meets an infinity.
        skip = forbidden | absent
        u = torch.where(
            skip, 0.0, tau * scores.masked_fill(skip, 0.0) - self.log_alpha.masked_fill(skip, 0.0)
        )
        per_entry = torch.log(tau) - u - torch.exp(-u)
        per_entry = torch.where(forbidden & absent, 0.0, per_entry)
        per_entry = torch.where(forbidden ^ absent, -math.inf, per_entry)
        return per_entry.sum((-2, -1))

    def log_prob(self, value):
        check_event_shape(value, self.event_shape, type(self).__name__)
        scores = perturbed_scores(value)
        if scores is None:
            raise ValueError(
                "GumbelSinkhorn.log_prob needs the perturbed scores Z behind the matrix: the "
                "Sinkhorn operator is not invertible (adding a constant to a row or column of Z "
                "gives the same matrix), so a bare doubly-stochastic matrix has no closed-form "
                "density ([GS] section 4). Pass a value drawn by GumbelSinkhorn.rsample() (it "
                "carries its scores), or call log_prob_scores(Z) on the scores directly."
            )
        if scores.shape[-2:] != self.event_shape:
            raise ValueError(
                f"value carries scores of event shape {tuple(scores.shape[-2:])}, but this "
                f"GumbelSinkhorn has event shape {tuple(self.event_shape)}"
            )
        return self.log_prob_scores(scores)


class GumbelSinkhornStraightThrough(GumbelSinkhorn):
    """:class:`GumbelSinkhorn` with hard samples and relaxed gradients (straight-through).

    ``rsample`` returns the permutation matrix ``M(Z)`` (an exact Gumbel-Matching sample,
    ``perm_to_matrix(matching(Z))``) in the forward pass, while gradients flow through the
    relaxed ``S(Z)``, as Pyro's ``RelaxedOneHotCategoricalStraightThrough`` does for
    categories. ``log_prob`` is the density of the scores ``Z``, as for
    :class:`GumbelSinkhorn`.

    Example::

        >>> import torch
        >>> from pyro_permutations.distributions import GumbelSinkhornStraightThrough
        >>> log_alpha = torch.randn(4, 4, requires_grad=True)
        >>> p = GumbelSinkhornStraightThrough(log_alpha, 0.5).rsample()
        >>> bool(((p == 0) | (p == 1)).all()), bool((p.sum(0) == 1).all())
        (True, True)
        >>> (p * torch.randn(4, 4)).sum().backward()
        >>> log_alpha.grad.shape
        torch.Size([4, 4])
    """

    @property
    def support(self):
        """:data:`~pyro_permutations.constraints.birkhoff`: the values are permutation
        matrices, whatever ``n_iters``."""
        return birkhoff

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GumbelSinkhornStraightThrough, _instance)
        return super().expand(batch_shape, _instance=new)

    def scores_to_matrix(self, scores):
        soft = super().scores_to_matrix(scores)
        hard = perm_to_matrix(matching(scores), dtype=soft.dtype)
        return attach_scores(hard + (soft - soft.detach()), scores)


@register_kl(GumbelSinkhorn, GumbelSinkhorn)
def _kl_gumbel_sinkhorn(q, p):
    """``KL(q(Z) || p(Z))`` between the perturbed-score laws, in closed form [GS] section 4.

    Per entry, with ``Z ~ Gumbel(X_q / tau_q, 1 / tau_q)`` under ``q`` and
    ``Gumbel(X_p / tau_p, 1 / tau_p)`` under ``p``, ``r = tau_p / tau_q`` and
    ``d = tau_p (X_q / tau_q - X_p / tau_p)``:
    ``KL = log(tau_q / tau_p) + gamma (r - 1) - 1 + d + Gamma(1 + r) exp(-d)``.
    The sum runs over the pairs allowed by both: a pair forbidden (``X = -inf``) in both has
    ``Z = -inf`` under both and adds nothing, while a pair forbidden in only one of them makes
    the laws mutually singular there, ``KL = +inf``. It upper-bounds the KL between the laws of
    the matrices ``S(Z)``.
    """
    tau_q, tau_p = q._tau(), p._tau()
    forbidden_q, forbidden_p = torch.isneginf(q.log_alpha), torch.isneginf(p.log_alpha)
    either = forbidden_q | forbidden_p
    x_q = torch.where(either, 0.0, q.log_alpha)
    x_p = torch.where(either, 0.0, p.log_alpha)
    r = tau_p / tau_q
    d = tau_p * (x_q / tau_q - x_p / tau_p)
    gamma = 0.5772156649015329
    kl = torch.log(tau_q / tau_p) + gamma * (r - 1) - 1 + d + torch.exp(torch.lgamma(1 + r) - d)
    kl = torch.where(forbidden_q & forbidden_p, 0.0, kl)
    kl = torch.where(forbidden_q ^ forbidden_p, math.inf, kl)
    return kl.sum((-2, -1))
