"""Shared accessors of the Birkhoff relaxations built as a Normal pushed through a transform."""

import math

import torch


def shape_of(x):
    """The shape of a tensor argument, ``()`` for a number."""
    return x.shape if isinstance(x, torch.Tensor) else torch.Size()


class TransformedNormalMixin:
    """For ``TransformedDistribution(Normal(loc, scale).to_event(2), [transform])`` subclasses:
    the base Normal's ``loc`` and ``scale`` and the transform's ``temperature``, and a ``repr``
    that shows them (torch's lists only parameters stored as attributes)."""

    @property
    def loc(self):
        return self.base_dist.base_dist.loc

    @property
    def scale(self):
        return self.base_dist.base_dist.scale

    @property
    def temperature(self):
        return self.transforms[0].temperature

    def _stick_breaking_log_prob(self, value, log_prob):
        """``log_prob(value)`` of a stick-breaking distribution, with ``-inf`` at the vertices
        (every entry exactly 0 or 1: a permutation matrix, or a one-hot vector).

        The map reaches only the interior, and near a vertex the Gaussian term falls as
        ``-Psi^2 / (2 nu^2)`` while the Jacobian term grows only linearly in ``|Psi| / tau``, so
        the density tends to 0 there: ``-inf`` is its limit (the inversion would clamp
        ``Psi`` at the dtype's ``tiny`` and give a finite, meaningless number). The value
        the transform has just made (``rsample`` then ``log_prob``, through the cache) keeps
        the density of its exact ``Psi`` even if it rounds to a vertex."""
        event_dim = len(self.event_shape)
        # Read before log_prob, which caches the pair it inverts.
        cached = getattr(self.transforms[0], "_cached_x_y", (None, None))[1]
        out = log_prob(value)
        if self.event_shape.numel() <= 1 or value is cached:
            return out  # a single point (N = 1), or a sample with its exact Psi
        dims = tuple(range(-event_dim, 0))
        vertex = ((value == 0) | (value == 1)).all(dims)
        return out.masked_fill(vertex, -math.inf)

    def __repr__(self):
        # As torch's Distribution.__repr__: a one-element value in full, else its size.
        parts = []
        for name in ("loc", "scale", "temperature"):
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                value = value.item() if value.numel() == 1 else value.size()
            parts.append(f"{name}: {value}")
        return f"{type(self).__name__}({', '.join(parts)})"
