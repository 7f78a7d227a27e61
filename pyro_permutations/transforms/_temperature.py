"""What the tempered transforms share: equality, hashing, ``repr`` and ``with_cache``, all
keyed on ``self.temperature`` (a number, or a tensor for the stick-breaking transforms)."""

import torch


class TemperatureTransformMixin:
    """Put before :class:`~torch.distributions.transforms.Transform` in the bases; the class's
    ``__init__`` must take ``(temperature, cache_size=0)``."""

    def __eq__(self, other):
        if type(other) is not type(self):
            return False
        a, b = self.temperature, other.temperature
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            a, b = torch.as_tensor(a), torch.as_tensor(b)
            return a.shape == b.shape and bool((a == b).all())
        return a == b

    def __hash__(self):
        if isinstance(self.temperature, torch.Tensor):
            return id(self)
        return hash((type(self), self.temperature))

    def __repr__(self):
        return f"{type(self).__name__}(temperature={self.temperature})"

    def with_cache(self, cache_size=1):
        if self._cache_size == cache_size:
            return self
        return type(self)(self.temperature, cache_size=cache_size)
