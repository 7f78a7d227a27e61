"""Shared accessors of the Birkhoff relaxations built as a Normal pushed through a transform."""

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

    def __repr__(self):
        # As torch's Distribution.__repr__: a one-element value in full, else its size.
        parts = []
        for name in ("loc", "scale", "temperature"):
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                value = value.item() if value.numel() == 1 else value.size()
            parts.append(f"{name}: {value}")
        return f"{type(self).__name__}({', '.join(parts)})"
