"""Standard Gumbel noise that stays finite in every floating dtype."""

import torch

__all__ = ["sample_gumbel"]


def sample_gumbel(shape, dtype=None, device=None, generator=None):
    """Draw iid standard Gumbel noise, :math:`\\mathrm{Gumbel}(0, 1)`, by inverse transform.

    .. math:: \\epsilon = -\\log(-\\log U), \\qquad U \\sim \\mathrm{Uniform}(0, 1)

    ``U`` is clamped to ``[tiny, 1 - eps]`` of the dtype (``torch.finfo``) before the
    transform, so the result is finite even when the uniform draw is exactly ``0`` (or ``1``):
    in float32 the values lie in about ``[-4.5, 15.9]``, in float64 in ``[-6.6, 36.0]``. The
    clamp changes the distribution only on events of probability below ``2 * eps``.
    The mean is Euler's constant :math:`\\gamma \\approx 0.5772` and the variance
    :math:`\\pi^2 / 6`.

    This is the noise of Gumbel-Matching ``M(X + eps)`` and Gumbel-Sinkhorn ``S((X + eps)/tau)``
    in [GS] section 2.

    :param shape: int or sequence of ints, the shape of the sample.
    :param torch.dtype dtype: floating dtype; defaults to ``torch.get_default_dtype()``.
    :param device: device of the sample (default: the current default device).
    :param torch.Generator generator: optional random number generator.
    :returns: tensor of the given shape, dtype and device.

    Example::

        >>> g = sample_gumbel((2, 3), generator=torch.Generator().manual_seed(0))
        >>> g.shape, bool(torch.isfinite(g).all())
        (torch.Size([2, 3]), True)

    References:

    [GS] Mena, Belanger, Linderman, Snoek. Learning Latent Permutations with Gumbel-Sinkhorn
    Networks. ICLR 2018.
    """
    if isinstance(shape, int):
        shape = (shape,)
    if dtype is None:
        dtype = torch.get_default_dtype()
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    finfo = torch.finfo(dtype)
    u = torch.rand(tuple(shape), dtype=dtype, device=device, generator=generator)
    u = u.clamp_(finfo.tiny, 1 - finfo.eps)
    return -torch.log(-torch.log(u))
