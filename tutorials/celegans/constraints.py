"""Which labels each observed neuron may have: positions along the body and hand-identified
neurons ([BP] section 6).

In worm ``j`` the observed neuron ``m`` is the connectome neuron ``truth[j, m]``. Its position
is seen with noise, ``p_obs[j, m] = p[truth[j, m]] + e``, and it may be label ``n`` only if
``|p_obs[j, m] - p[n]| < nu``. The noise ``e`` is Gaussian with standard deviation
``noise_std``, truncated to ``(-nu, nu)`` (drawn by the inverse CDF), so the true label is
always allowed without being singled out. A fraction of the neurons is known: the row of a
known neuron allows only its true label, and that label's column only that neuron.
"""

import math
from dataclasses import dataclass

import torch


@dataclass
class Constraints:
    """:ivar observed_positions: ``(J, N)`` noisy positions of the observed neurons.
    :ivar allowed: ``(J, N, N)`` bool, ``allowed[j, m, n]``: neuron ``m`` of worm ``j`` may
        be label ``n``.
    :ivar known: ``(J, N)`` bool, the neurons identified by hand.
    """

    observed_positions: torch.Tensor
    allowed: torch.Tensor
    known: torch.Tensor

    def log_mask(self, dtype=torch.float64):
        """``0`` where allowed, ``-inf`` where forbidden: scores for ``log_sinkhorn``."""
        zero = torch.zeros(self.allowed.shape, dtype=dtype, device=self.allowed.device)
        return zero.masked_fill(~self.allowed, -math.inf)

    def mean_candidates(self):
        """Mean number of allowed labels per unknown neuron (nan if every neuron is known)."""
        counts = self.allowed.sum(-1).to(torch.float64)
        return float(counts[~self.known].mean())


def make_constraints(positions, truth, nu, known_fraction, noise_std, generator):
    """Draw observed positions and known neurons, and build the mask of allowed pairs.

    :param torch.Tensor positions: ``(N,)`` true positions in ``[0, 1]`` of the ``N`` labels.
    :param torch.Tensor truth: ``(J, N)`` long, ``truth[j, m]`` = label of observed neuron
        ``m`` of worm ``j``.
    :param float nu: tolerance, ``> 0``.
    :param float known_fraction: fraction of neurons known per worm, in ``[0, 1]``
        (``round(known_fraction * N)`` of them, drawn uniformly).
    :param float noise_std: standard deviation of the position noise before truncation.
    :param torch.Generator generator: the random stream.
    :returns: :class:`Constraints`.
    """
    if not nu > 0:
        raise ValueError(f"nu must be positive, got {nu!r}")
    if not 0 <= known_fraction <= 1:
        raise ValueError(f"known_fraction must be in [0, 1], got {known_fraction!r}")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be non-negative, got {noise_std!r}")
    positions = torch.as_tensor(positions, dtype=torch.float64)
    j, n = truth.shape
    true_pos = positions[truth]  # (J, N)
    if noise_std > 0:
        # Truncated normal by the inverse CDF: u uniform between Phi(-nu/s) and Phi(nu/s).
        # The bounds are pulled in by a relative 1e-9 so that |e| < nu strictly.
        edge = torch.special.ndtr(torch.tensor(nu * (1 - 1e-9) / noise_std, dtype=torch.float64))
        u = torch.rand(j, n, generator=generator, dtype=torch.float64)
        u = (1 - edge) + u * (2 * edge - 1)
        noise = noise_std * torch.special.ndtri(u)
    else:
        noise = torch.zeros(j, n, dtype=torch.float64)
    observed = true_pos + noise
    allowed = (observed[:, :, None] - positions[None, None, :]).abs() < nu
    known = torch.zeros(j, n, dtype=torch.bool)
    k = round(known_fraction * n)
    for w in range(j):
        known[w, torch.randperm(n, generator=generator)[:k]] = True
    # Known rows allow only their label; a known label's column allows only its neuron.
    label_known = torch.zeros(j, n, dtype=torch.bool)
    label_known.scatter_(1, truth, known)
    allowed &= ~known[:, :, None]
    allowed &= ~label_known[:, None, :]
    allowed.scatter_(2, truth[:, :, None], True)
    return Constraints(observed, allowed, known)
