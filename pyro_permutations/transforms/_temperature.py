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
        if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor):
            return a == b
        # A number is compared on the tensor's device; tensors on different devices are
        # different temperatures (comparing them would raise, moving one would copy it).
        a = a if isinstance(a, torch.Tensor) else torch.as_tensor(a, device=b.device)
        b = b if isinstance(b, torch.Tensor) else torch.as_tensor(b, device=a.device)
        if a.device != b.device or a.shape != b.shape:
            return False
        return bool((a == b).all())

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
