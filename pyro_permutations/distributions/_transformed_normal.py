"""Shared accessors of the Birkhoff relaxations built as a Normal pushed through a transform."""

import torch


def shape_of(x):
    """The shape of a tensor argument, ``()`` for a number."""
    return x.shape if isinstance(x, torch.Tensor) else torch.Size()


class TransformedNormalMixin:
    """For ``TransformedDistribution(Normal(loc, scale).to_event(2), [transform])`` subclasses:
    the base Normal's ``loc`` and ``scale`` and the transform's ``temperature``."""

    @property
    def loc(self):
        return self.base_dist.base_dist.loc

    @property
    def scale(self):
        return self.base_dist.base_dist.scale

    @property
    def temperature(self):
        return self.transforms[0].temperature
