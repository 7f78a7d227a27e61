"""The uniform distribution over the ``n!`` permutations of ``n`` items."""

import math

import torch

from pyro_permutations.distributions._discrete_permutation import DiscretePermutationDistribution
from pyro_permutations.ops._validation import broadcast_shapes, check_device, check_size

__all__ = ["UniformPermutation"]


class UniformPermutation(DiscretePermutationDistribution):
    """Uniform distribution over the permutations of ``n`` items.

    .. math:: p(\\mathrm{perm}) = \\frac{1}{n!}

    Values are long tensors ``perm`` of shape ``batch_shape + (n,)`` with the library's
    convention ``perm[i] = j``: item (row) ``i`` goes to position (column) ``j``. Samples are
    ``argsort`` of iid uniform noise, one independent permutation per batch element.
    :meth:`log_prob` is ``-log n!`` for a permutation and ``-inf`` for any other value (with
    ``validate_args`` such a value raises instead, as Pyro does for values outside the support);
    values ``(..., n)`` broadcast against the batch shape. :meth:`enumerate_support` lists the
    ``n!`` permutations in lexicographic order (``n <= 8``), so a ``UniformPermutation`` site
    can be enumerated by Pyro's ``TraceEnum_ELBO``. The distribution has no tensor parameters:
    samples and enumerated values are on ``device`` (give the model's device, e.g. ``"cuda"``,
    to enumerate there), and :meth:`log_prob` has the default dtype
    (``torch.get_default_dtype()``) on the value's device; Pyro's enumeration needs every site's
    ``log_prob`` in one dtype, so in a float64 model set the default dtype to float64.

    :param int n: number of items, ``n >= 1`` (a Python or NumPy integer).
    :param batch_shape: batch shape (default ``()``).
    :param device: a ``torch.device`` or device string, where samples and enumerated values
        are made (default: torch's default device, normally the CPU).

    Example::

        >>> from pyro_permutations.distributions.uniform_permutation import UniformPermutation
        >>> d = UniformPermutation(4, batch_shape=(2,))
        >>> d.sample((3,)).shape
        torch.Size([3, 2, 4])
        >>> d.log_prob(torch.tensor([3, 1, 0, 2]))  # -log 4! = -log 24
        tensor([-3.1781, -3.1781])
        >>> d.enumerate_support(expand=False).shape
        torch.Size([24, 1, 4])
    """

    arg_constraints = {}
    has_rsample = False

    def __init__(self, n, batch_shape=(), validate_args=None, *, device=None):
        n = check_size(n, "n", "the number of items")
        self.device = torch.empty(()).device if device is None else check_device(device, "device")
        super().__init__(batch_shape, n, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(UniformPermutation, _instance)
        batch_shape = self._expanded_shape(batch_shape)
        new.device = self.device
        super(UniformPermutation, new).__init__(batch_shape, self.n, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @classmethod
    def infer_shapes(cls, n, batch_shape=(), validate_args=(), device=()):
        """``(batch_shape, event_shape)``: ``n`` is passed as its value (an int; no tensor
        argument carries the number of items) and ``batch_shape`` as the batch shape itself;
        ``validate_args`` and ``device`` (passed as ``()``) do not change them."""
        n = check_size(n, "n", "the number of items, passed as an int: no tensor carries it")
        return torch.Size(batch_shape), torch.Size((n,))

    def _device(self):
        return self.device

    def sample(self, sample_shape=torch.Size()):
        return torch.rand(self._extended_shape(sample_shape), device=self.device).argsort(dim=-1)

    def log_prob(self, value):
        self._check_value(value)
        valid, _ = self._split_support(value)
        shape = broadcast_shapes(
            "batch shapes", ("value", valid.shape), ("batch_shape", self.batch_shape)
        )
        log_p = torch.full(shape, -math.lgamma(self.n + 1), device=value.device)
        return log_p.masked_fill(~valid, -math.inf)
