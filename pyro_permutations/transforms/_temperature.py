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
        # A number is compared in the tensor's dtype, on its device; tensors on different
        # devices are different temperatures (comparing them would raise, moving one copy it).
        if not isinstance(a, torch.Tensor):
            a = torch.as_tensor(a, dtype=b.dtype, device=b.device)
        if not isinstance(b, torch.Tensor):
            b = torch.as_tensor(b, dtype=a.dtype, device=a.device)
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
