"""Transforms onto the Birkhoff polytope, registered with torch/Pyro, and their counterparts on
the simplex (:class:`StickBreakingSimplexTransform`, :class:`RoundingSimplexTransform`, not
registered: ``biject_to(simplex)`` stays torch's ``StickBreakingTransform``).

- ``biject_to(birkhoff)`` is :class:`StickBreakingBirkhoffTransform` (temperature 1): a
  bijection from ``R^{(N-1) x (N-1)}`` onto the polytope's interior with an exact Jacobian, used
  by Pyro's autoguides (``AutoNormal``, ``AutoMultivariateNormal``, ...) and by HMC/NUTS for a
  Birkhoff-valued latent.
- ``transform_to(birkhoff)`` is :class:`SinkhornTransform`: ``X -> S(X)`` on ``(N, N)`` scores
  with right inverse ``log``, used for constrained parameters
  (``pyro.param(..., constraint=birkhoff)``, ``AutoDelta``), as ``softmax`` is for the simplex.
- ``biject_to(column_stochastic)`` and ``transform_to(column_stochastic)`` are
  :class:`ColumnStickBreakingTransform`: torch's stick-breaking on every column.
"""

from torch.distributions import biject_to, transform_to

from pyro_permutations.constraints import Birkhoff, ColumnStochastic
from pyro_permutations.transforms.column_stochastic import ColumnStickBreakingTransform
from pyro_permutations.transforms.rounding import RoundingBirkhoffTransform
from pyro_permutations.transforms.rounding_simplex import RoundingSimplexTransform
from pyro_permutations.transforms.sinkhorn import SinkhornTransform
from pyro_permutations.transforms.stick_breaking import StickBreakingBirkhoffTransform
from pyro_permutations.transforms.stick_breaking_simplex import StickBreakingSimplexTransform

__all__ = [
    "ColumnStickBreakingTransform",
    "RoundingBirkhoffTransform",
    "RoundingSimplexTransform",
    "SinkhornTransform",
    "StickBreakingBirkhoffTransform",
    "StickBreakingSimplexTransform",
]


@biject_to.register(Birkhoff)
def _biject_to_birkhoff(constraint):
    return StickBreakingBirkhoffTransform()


@transform_to.register(Birkhoff)
def _transform_to_birkhoff(constraint):
    return SinkhornTransform()


@biject_to.register(ColumnStochastic)
@transform_to.register(ColumnStochastic)
def _to_column_stochastic(constraint):
    return ColumnStickBreakingTransform()
