"""An improper flat prior on the Birkhoff polytope."""

import torch
from pyro.distributions import ImproperUniform

from pyro_permutations.constraints import birkhoff
from pyro_permutations.ops._validation import (
    broadcast_shapes,
    check_event_shape,
    check_expand,
    check_size,
)

__all__ = ["FlatBirkhoff"]


class FlatBirkhoff(ImproperUniform):
    """Improper flat prior on the Birkhoff polytope of ``n x n`` doubly stochastic matrices.

    .. math:: \\log p(X) = 0 \\quad \\text{for } X \\in \\mathcal{B}_N

    ``support`` is :data:`~pyro_permutations.constraints.birkhoff`; with ``validate_args`` a
    value outside it (to the constraint's tolerance) raises :class:`ValueError`. The density is
    not normalised: use it in models whose guide provides the value and has a density on the
    matrix itself, that is a :class:`~pyro_permutations.distributions.StickBreakingBirkhoff`
    guide in SVI, or Pyro's ``AutoNormal`` / ``AutoMultivariateNormal`` (which are
    stick-breaking guides through ``biject_to(birkhoff)``). Then it adds
    nothing to the ELBO beyond restricting the support, and the ELBO is a lower bound on
    ``log`` of the integral of the likelihood over the polytope (finite: the free entries
    ``X[:N-1, :N-1]``, in which both densities are taken, lie in the unit cube).

    Other guides do not fit it. A
    :class:`~pyro_permutations.distributions.GumbelSinkhorn` guide's ``log_prob`` is the
    density of its perturbed scores ``Z`` (``N^2`` numbers), not of the matrix, so the
    "ELBO" mixes two spaces and bounds nothing (with a learnable temperature the loss falls
    without limit). A :class:`~pyro_permutations.distributions.RoundingBirkhoff` guide's
    samples are not doubly stochastic, so they are outside the support (``log_prob`` raises
    with validation); pair it with
    :class:`~pyro_permutations.distributions.RoundingPrior` instead.

    **sample() is not a draw.** :meth:`sample` returns the centre of the polytope, the matrix
    with every entry ``1 / n`` (the mean of the uniform distribution on the polytope, which
    this density is once normalised), the same matrix each call, so that Pyro's
    initialisation (``init_to_feasible``, the default of ``AutoNormal``; ``init_to_mean`` and
    ``init_to_median``) and ``Predictive`` can trace the model. Do not read its "samples" as a
    prior predictive: for draws from the uniform distribution on the polytope, use a proper
    distribution on it instead.

    Shapes: ``event_shape = (n, n)``; ``log_prob`` returns zeros of the broadcast of the value's
    batch shape with ``batch_shape``.

    :param int n: matrix size ``N >= 1`` (a Python or NumPy integer).
    :param tuple batch_shape: batch shape, default ``()``.
    :param bool validate_args: as for any distribution.

    Example::

        >>> import torch
        >>> prior = FlatBirkhoff(3, validate_args=True)
        >>> prior.log_prob(torch.full((3, 3), 1 / 3))
        tensor(0.)
        >>> prior.log_prob(torch.ones(3, 3))
        Traceback (most recent call last):
        ...
        ValueError: Expected value argument ...
    """

    def __init__(self, n, batch_shape=(), validate_args=None):
        n = check_size(n, "n", "the matrix size N")
        self.n = n
        super().__init__(birkhoff, torch.Size(batch_shape), torch.Size((n, n)))
        if validate_args is not None:
            self._validate_args = validate_args

    @classmethod
    def infer_shapes(cls, n, batch_shape=(), validate_args=()):
        """``(batch_shape, event_shape)``: ``n`` is passed as its value (an int; no tensor
        argument carries the matrix size) and ``batch_shape`` as the batch shape itself."""
        n = check_size(n, "n", "the matrix size N, passed as an int: no tensor carries it")
        return torch.Size(batch_shape), torch.Size((n, n))

    def expand(self, batch_shape, _instance=None):
        batch_shape = check_expand(type(self).__name__, self.batch_shape, batch_shape)
        new = self._get_checked_instance(FlatBirkhoff, _instance)
        new.n = self.n
        new = super().expand(batch_shape, _instance=new)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        check_event_shape(value, self.event_shape, type(self).__name__)
        if self._validate_args:
            self._validate_sample(value)
        shape = broadcast_shapes(
            "batch shapes",
            ("value", value.shape[: value.dim() - self.event_dim]),
            ("batch_shape", self.batch_shape),
        )
        return value.new_zeros(shape)

    @property
    def mean(self):
        """The centre of the polytope, every entry ``1 / n`` (the mean of the normalised
        uniform distribution on it), shape ``batch_shape + (n, n)``."""
        return torch.full(self.batch_shape + self.event_shape, 1.0 / self.n)

    def sample(self, sample_shape=()):
        """The centre of the polytope (every entry ``1 / n``), shape ``sample_shape +
        batch_shape + (n, n)``, in torch's default dtype: a valid point for Pyro's
        initialisation and ``Predictive``, not a random draw (see the class docstring)."""
        return self.mean.expand(self._extended_shape(sample_shape))
