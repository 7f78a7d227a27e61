"""Gumbel-Sinkhorn over partial matchings: rectangular scores, or scores with a dustbin."""

import math

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.kl import register_kl

from pyro_permutations.constraints import PartialBirkhoff
from pyro_permutations.ops import log_sinkhorn, sample_gumbel
from pyro_permutations.ops._validation import (
    broadcast_shapes,
    check_event_shape,
    check_expand,
    check_scores,
    check_temperature,
)
from pyro_permutations.ops.matching import check_unmatched
from pyro_permutations.ops.sinkhorn import _check_options, check_feasible_scores

__all__ = ["PartialGumbelSinkhorn", "partial_perturbed_scores"]

#: Name of the attribute by which a sampled matrix carries its perturbed scores.
SCORES_ATTR = "_partial_gumbel_sinkhorn_scores"
_EULER_GAMMA = 0.5772156649015329


def partial_perturbed_scores(value):
    """The perturbed scores behind a value drawn from a :class:`PartialGumbelSinkhorn` (the
    ``(..., N + 1, M + 1)`` augmented ``bar Z`` with unmatched scores, ``(..., N, M)`` without),
    or ``None`` if ``value`` does not carry them."""
    return getattr(value, SCORES_ATTR, None)


class PartialGumbelSinkhorn(TorchDistribution):
    """Gumbel-Sinkhorn distribution over soft partial matchings [GS], [SG].

    The perturbed scores are Gumbel around the tempered scores, at every pair and, with
    unmatched scores, at every row's and column's dustbin entry:

    .. math::

        Z_{ij} = (X_{ij} + \\epsilon_{ij}) / \\tau, \\quad
        Z_{i, \\varnothing} = (u_i + \\epsilon_i) / \\tau, \\quad
        Z_{\\varnothing, j} = (v_j + \\epsilon_j) / \\tau, \\qquad
        \\epsilon \\sim \\mathrm{Gumbel}(0, 1) \\text{ iid},

    and a sample is the ``(N, M)`` real block ``P`` of the Sinkhorn limit of
    :func:`~pyro_permutations.ops.log_sinkhorn` on them (the augmented matrix with corner 0,
    rows ``(1_N, M)``, columns ``(1_M, N)``; without unmatched scores the rectangular problem,
    every item of the smaller side matched). ``P`` is doubly substochastic
    (:class:`~pyro_permutations.constraints.PartialBirkhoff`, with ``complete=True`` when no
    unmatched scores are given: then the smaller side's sums are one): ``P[i, j]`` is the weight of
    row ``i`` going to column ``j``, ``1 - sum_j P[i, j]`` that of row ``i`` being unmatched.
    As ``tau -> 0``, ``P`` tends to the matrix of a :class:`PartialGumbelMatching` sample.
    ``rsample`` is reparameterised: gradients reach ``log_alpha``, the unmatched scores and
    ``temperature`` through the solver's implicit gradient.

    **Density.** As for :class:`GumbelSinkhorn` ([GS] section 4), the latent variable is the
    perturbed score ``Z``, whose density is exact: a ``Gumbel(loc / tau, 1 / tau)`` per entry,

    .. math::

        \\log q(Z) = \\sum_{\\text{entries } e} \\log \\tau - (\\tau Z_e - X_e)
                     - e^{-(\\tau Z_e - X_e)},

    over the allowed pairs and (with unmatched scores) the ``N + M`` dustbin entries; a
    forbidden pair (``X_ij = -inf``) has ``Z_ij = -inf`` and adds nothing. A matrix drawn by
    :meth:`rsample` carries its ``Z`` (:func:`partial_perturbed_scores`), and :meth:`log_prob`
    of such a matrix is that density; ``kl_divergence`` between two of them (the pre-Sinkhorn
    KL, an upper bound on the KL between the matrices' laws) is closed form.

    :param torch.Tensor log_alpha: scores ``X`` ``(..., N, M)``; ``-inf`` entries forbidden.
        Without unmatched scores every item of the smaller side must be matched, so with
        ``validate_args`` a mask that leaves no such matching is refused here (``ValueError``).
    :param temperature: ``tau``, positive and finite (a float or a tensor broadcastable to the
        batch shape).
    :param unmatched_rows: scores ``u`` ``(..., N)`` of leaving each row unmatched (a number
        for all), finite; give both or neither. Without them ``N != M`` or ``N = M`` gives the
        rectangular (or square) problem.
    :param unmatched_cols: scores ``v`` ``(..., M)`` of leaving each column unmatched.
    :param float tol: Sinkhorn's marginal-error tolerance (see :func:`log_sinkhorn`).
    :param str grad: ``"implicit"`` or ``"unrolled"`` (see :func:`log_sinkhorn`).
    :raises ValueError: on invalid scores, unmatched scores (not finite, not broadcasting, or
        only one given), temperature or options.

    Shapes: ``batch_shape`` is the broadcast of ``log_alpha.shape[:-2]``, the temperature's
    shape and the unmatched scores' batch shapes; ``event_shape = (N, M)``.

    Example::

        >>> import torch
        >>> from pyro_permutations.distributions import PartialGumbelSinkhorn
        >>> d = PartialGumbelSinkhorn(torch.randn(2, 3, 4), 0.5, unmatched_rows=0.0,
        ...                           unmatched_cols=torch.zeros(4))
        >>> p = d.rsample()
        >>> p.shape, bool((p.sum(-1) <= 1 + 1e-4).all()), d.log_prob(p).shape
        (torch.Size([2, 3, 4]), True, torch.Size([2]))

    References:

    [GS] Mena, Belanger, Linderman, Snoek. Learning Latent Permutations with Gumbel-Sinkhorn
    Networks. ICLR 2018, sections 2-4.
    [SG] Sarlin, DeTone, Malisiewicz, Rabinovich. SuperGlue: Learning Feature Matching with
    Graph Neural Networks. CVPR 2020, section 3.2.
    """

    arg_constraints = {
        "log_alpha": constraints.independent(constraints.real, 2),
        "temperature": constraints.positive,
    }
    has_rsample = True

    @property
    def support(self):
        """:class:`~pyro_permutations.constraints.PartialBirkhoff`, complete (every item of the
        smaller side matched) without unmatched scores."""
        return PartialBirkhoff(complete=self.unmatched_rows is None)

    def __init__(
        self,
        log_alpha,
        temperature,
        *,
        unmatched_rows=None,
        unmatched_cols=None,
        tol=1e-5,
        grad=None,
        validate_args=None,
    ):
        check_scores(log_alpha, "log_alpha", allow_neg_inf=True, square=False)
        temperature = check_temperature(temperature)
        _check_options(tol, 1, None, grad)
        if not isinstance(temperature, torch.Tensor):
            temperature = torch.tensor(temperature, dtype=log_alpha.dtype, device=log_alpha.device)
        temperature = temperature.to(dtype=log_alpha.dtype, device=log_alpha.device)
        unmatched = check_unmatched(log_alpha, unmatched_rows, unmatched_cols, "log_alpha")
        named = [("log_alpha", log_alpha.shape[:-2]), ("temperature", temperature.shape)]
        if unmatched is not None:
            named += [("unmatched_rows", unmatched[0].shape[:-1])]
            named += [("unmatched_cols", unmatched[1].shape[:-1])]
        batch_shape = broadcast_shapes("batch shapes", *named)
        n, m = log_alpha.shape[-2:]
        self.log_alpha = log_alpha.expand(batch_shape + (n, m))
        self.temperature = temperature.expand(batch_shape)
        if unmatched is None:
            self.unmatched_rows = self.unmatched_cols = None
        else:
            self.unmatched_rows = unmatched[0].expand(batch_shape + (n,))
            self.unmatched_cols = unmatched[1].expand(batch_shape + (m,))
        self.tol, self.grad = tol, grad
        super().__init__(batch_shape, torch.Size((n, m)), validate_args=False)
        if validate_args is not None:
            self._validate_args = validate_args
        if self._validate_args:  # an infeasible mask of -inf pairs is reported here
            check_feasible_scores(log_alpha, has_unmatched=unmatched is not None)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(PartialGumbelSinkhorn, _instance)
        batch_shape = check_expand(type(self).__name__, self.batch_shape, batch_shape)
        n, m = self.event_shape
        new.log_alpha = self.log_alpha.expand(batch_shape + (n, m))
        new.temperature = self.temperature.expand(batch_shape)
        if self.unmatched_rows is None:
            new.unmatched_rows = new.unmatched_cols = None
        else:
            new.unmatched_rows = self.unmatched_rows.expand(batch_shape + (n,))
            new.unmatched_cols = self.unmatched_cols.expand(batch_shape + (m,))
        new.tol, new.grad = self.tol, self.grad
        super(PartialGumbelSinkhorn, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    @classmethod
    def infer_shapes(
        cls,
        log_alpha,
        temperature=(),
        unmatched_rows=(),
        unmatched_cols=(),
        tol=(),
        grad=(),
        validate_args=(),
    ):
        """``(batch_shape, event_shape)`` for arguments of the given shapes."""
        shapes = [torch.Size(log_alpha[:-2]), torch.Size(temperature)]
        shapes += [torch.Size(unmatched_rows[:-1]), torch.Size(unmatched_cols[:-1])]
        return torch.broadcast_shapes(*shapes), torch.Size(log_alpha[-2:])

    def _tau(self):
        return self.temperature[..., None, None]

    def _locations(self):
        """The Gumbel locations (times ``tau``): ``X``, or the augmented ``[[X, u], [v, 0]]``."""
        if self.unmatched_rows is None:
            return self.log_alpha
        x, u, v = self.log_alpha, self.unmatched_rows, self.unmatched_cols
        top = torch.cat([x, u.unsqueeze(-1)], dim=-1)
        bottom = torch.cat([v, torch.zeros_like(v[..., :1])], dim=-1)
        return torch.cat([top, bottom.unsqueeze(-2)], dim=-2)

    def _corner_mask(self, like):
        """True at the corner of the augmented matrix (a constant 0, no Gumbel), else False."""
        mask = torch.zeros(like.shape[-2:], dtype=torch.bool, device=like.device)
        if self.unmatched_rows is not None:
            mask[-1, -1] = True
        return mask

    def sample_scores(self, sample_shape=torch.Size()):
        """Draw the perturbed scores (``(..., N + 1, M + 1)`` augmented, corner 0, with
        unmatched scores; ``(..., N, M)`` without), differentiable in the parameters."""
        loc = self._locations()
        shape = torch.Size(sample_shape) + loc.shape
        eps = sample_gumbel(shape, dtype=loc.dtype, device=loc.device)
        forbidden = torch.isneginf(loc)
        scores = (loc.masked_fill(forbidden, 0.0) + eps) / self._tau()
        scores = scores.masked_fill(self._corner_mask(loc), 0.0)
        return scores.masked_fill(forbidden, -math.inf)

    def scores_to_matrix(self, scores):
        """The real block of ``S(Z)`` with this distribution's options, carrying ``Z``."""
        n, m = self.event_shape
        if self.unmatched_rows is None:
            log_p = log_sinkhorn(
                scores, tol=self.tol, grad=self.grad, validate=bool(self._validate_args)
            )
        else:
            log_p = log_sinkhorn(
                scores[..., :n, :m],
                unmatched_rows=scores[..., :n, m],
                unmatched_cols=scores[..., n, :m],
                tol=self.tol,
                grad=self.grad,
                validate=bool(self._validate_args),
            )[..., :n, :m]
        value = log_p.exp()
        setattr(value, SCORES_ATTR, scores)
        return value

    def rsample(self, sample_shape=torch.Size()):
        return self.scores_to_matrix(self.sample_scores(sample_shape))

    def log_prob_scores(self, scores):
        """Exact log-density of perturbed scores (the shape :meth:`sample_scores` returns),
        summed over the entries; ``-inf`` where ``Z`` is finite at a forbidden pair or ``-inf``
        at an allowed one."""
        loc = self._locations()
        tau = self._tau()
        forbidden = torch.isneginf(loc)
        absent = torch.isneginf(scores)
        skip = forbidden | absent
        w = torch.where(skip, 0.0, tau * scores.masked_fill(skip, 0.0) - loc.masked_fill(skip, 0))
        per_entry = torch.log(tau) - w - torch.exp(-w)
        per_entry = torch.where(forbidden & absent, 0.0, per_entry)
        per_entry = torch.where(forbidden ^ absent, -math.inf, per_entry)
        per_entry = per_entry.masked_fill(self._corner_mask(loc), 0.0)
        return per_entry.sum((-2, -1))

    def log_prob(self, value):
        check_event_shape(value, self.event_shape, type(self).__name__)
        scores = partial_perturbed_scores(value)
        if scores is None:
            raise ValueError(
                "PartialGumbelSinkhorn.log_prob needs the perturbed scores Z behind the matrix "
                "(the Sinkhorn operator is not invertible). Pass a value drawn by "
                "PartialGumbelSinkhorn.rsample() (it carries its scores), or call "
                "log_prob_scores(Z) on the scores directly."
            )
        expected = self._locations().shape[-2:]
        if scores.shape[-2:] != expected:
            raise ValueError(
                f"value carries scores of shape {tuple(scores.shape[-2:])}, but this "
                f"PartialGumbelSinkhorn's scores have shape {tuple(expected)}"
            )
        return self.log_prob_scores(scores)


@register_kl(PartialGumbelSinkhorn, PartialGumbelSinkhorn)
def _kl_partial_gumbel_sinkhorn(q, p):
    """``KL(q(Z) || p(Z))`` between the perturbed-score laws, in closed form: per entry, with
    ``r = tau_p / tau_q`` and ``d = tau_p (X_q / tau_q - X_p / tau_p)``,
    ``KL = log(tau_q / tau_p) + gamma (r - 1) - 1 + d + Gamma(1 + r) exp(-d)``, summed over
    the pairs allowed by both (``+inf`` at a pair forbidden in only one) and the dustbin
    entries. Both must have unmatched scores, or neither (else a ``ValueError``)."""
    if (q.unmatched_rows is None) != (p.unmatched_rows is None):
        raise ValueError(
            "kl_divergence of PartialGumbelSinkhorn distributions needs both with unmatched "
            "scores or both without: their perturbed scores live in different spaces"
        )
    if q.event_shape != p.event_shape:
        raise ValueError(
            f"kl_divergence needs equal event shapes, got {tuple(q.event_shape)} and "
            f"{tuple(p.event_shape)}"
        )
    broadcast_shapes("batch shapes", ("q", q.batch_shape), ("p", p.batch_shape))
    loc_q, loc_p = q._locations(), p._locations()
    tau_q, tau_p = q._tau(), p._tau()
    forbidden_q, forbidden_p = torch.isneginf(loc_q), torch.isneginf(loc_p)
    either = forbidden_q | forbidden_p
    x_q = torch.where(either, 0.0, loc_q)
    x_p = torch.where(either, 0.0, loc_p)
    r = tau_p / tau_q
    d = tau_p * (x_q / tau_q - x_p / tau_p)
    kl = torch.log(tau_q / tau_p) + _EULER_GAMMA * (r - 1) - 1 + d
    kl = kl + torch.exp(torch.lgamma(1 + r) - d)
    kl = torch.where(forbidden_q & forbidden_p, 0.0, kl)
    kl = torch.where(forbidden_q ^ forbidden_p, math.inf, kl)
    kl = kl.masked_fill(q._corner_mask(loc_q), 0.0)
    return kl.sum((-2, -1))
