"""Host synchronisations of ``log_sinkhorn``: a small constant (validation) plus one read per
check of the solver's loop, every ``CHECK_EVERY`` iterations, whatever ``N`` and however many
Newton steps, conjugate-gradient products or line-search trials the solve takes.

On the CPU a host read costs nothing, so they are counted through a ``TorchFunctionMode``
that sees every Python-level way of reading a tensor on the host (``item``, ``bool``, ``int``,
``float``, ``tolist``, ``cpu``, ``numpy``, ``nonzero`` and indexing by a boolean mask, which
needs the mask's count). The LAPACK path of the dense Newton solve (CPU only,
``64 <= N < 256``, see ``_spd_solve``) reads its systems on the host by design and is not used
here. Where CUDA exists the same bound is checked with
``torch.cuda.set_sync_debug_mode("warn")``.
"""

import contextlib
import math
import sys

import pytest
import torch
from torch.overrides import TorchFunctionMode

from pyro_permutations.ops import _sinkhorn_newton, log_sinkhorn

#: Host reads outside the loop: the finiteness check of the scores; where some entry is not
#: finite, the NaN and +inf checks and the test of the remembered permutations; with unmatched
#: scores one each for them.
VALIDATION_READS = 4

_READS = {"item", "__bool__", "__int__", "__float__", "tolist", "cpu", "numpy", "nonzero"}


def _is_mask(index):
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


class _HostReads(TorchFunctionMode):
    """Sees every torch function and tensor method called from Python (``__torch_function__``)
    and counts those that read a tensor on the host. A mode, not patched methods: a
    Python-level ``__getitem__`` set on ``torch.Tensor`` would change the class's C slots for
    the rest of the run (``torch.tensor`` of a list of 0-d tensors then fails)."""

    def __init__(self):
        super().__init__()
        self.counts = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in _READS:
            self.counts[name] = self.counts.get(name, 0) + 1
        elif name in ("__getitem__", "__setitem__") and _is_mask(args[1]):
            self.counts["mask index"] = self.counts.get("mask index", 0) + 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def count_host_reads():
    """Count host reads of tensors while the block runs: ``counts[name]`` per method."""
    with _HostReads() as mode:
        yield mode.counts


def test_the_hook_sees_every_kind_of_read():
    """The counter must count, or every bound below would pass with zero reads."""
    x = torch.randn(5)
    with count_host_reads() as counts:
        bool(x.any())
        x.sum().item()
        x.tolist()
        _ = x[x > 0]
        if (x > 10).all():
            pass
        torch.nonzero(x)
    assert counts == {
        "__bool__": 2,
        "item": 1,
        "tolist": 1,
        "mask index": 1,
        "nonzero": 1,
    }
    with count_host_reads() as counts:
        x.sum()  # no read
    assert counts == {}


def test_the_hook_leaves_tensor_as_it_was():
    """After the block ``torch.Tensor`` is unchanged, so later tests see the class as it was
    (``torch.tensor`` of a list of 0-d tensors, which a patched ``__getitem__`` breaks)."""
    before = dict(vars(torch.Tensor))
    with count_host_reads():
        torch.randn(3)[torch.tensor([True, False, True])]
    assert dict(vars(torch.Tensor)) == before
    values = [torch.tensor(1.0), torch.tensor(2.0)]
    assert torch.tensor(values).tolist() == [1.0, 2.0]


def _reads(x, **options):
    with count_host_reads() as counts:
        _, info = log_sinkhorn(x, return_info=True, **options)
    return sum(counts.values()), counts, int(info.iterations.max()), info


CASES = [
    # (batch, N, temperature, dtype, tol): plain sweeps only; Newton steps by Cholesky
    # (N < 64) through temperature stages; Newton steps by conjugate gradients (N >= 256).
    (3, 8, 1.0, torch.float64, 1e-10),
    (4, 12, 0.01, torch.float64, 1e-8),
    (2, 40, 0.001, torch.float32, 1e-5),
    (1, 300, 0.1, torch.float32, 1e-4),
    (1, 300, 0.01, torch.float32, 1e-3),
]


@pytest.mark.parametrize("every", [None, 4], ids=["default", "every-4"])
@pytest.mark.parametrize("batch, n, tau, dtype, tol", CASES)
def test_host_reads_are_one_per_check(monkeypatch, every, batch, n, tau, dtype, tol):
    """At most ``VALIDATION_READS + ceil(iterations / k) + 1`` reads (``k`` the check
    interval; the one more is the final check), independent of ``N`` and of the Newton steps;
    and at least one (the loop's check), so that the hook is known to see the solver."""
    if every is not None:
        monkeypatch.setattr(_sinkhorn_newton, "CHECK_EVERY_CPU", every)
    k = _sinkhorn_newton.CHECK_EVERY_CPU
    g = torch.Generator().manual_seed(n)
    x = torch.randn(batch, n, n, generator=g, dtype=dtype) / tau
    total, counts, iterations, info = _reads(x, tol=tol)
    assert info.converged.all()
    bound = VALIDATION_READS + math.ceil(iterations / k) + 1
    assert 1 <= total <= bound, (counts, iterations, bound)
    if tau < 1.0:
        assert (info.newton_steps > 0).any()  # the bound holds through Newton steps
    # and more than the constant: the reads are the checks, not one per step of any kind
    assert total <= VALIDATION_READS + 1 + iterations


def test_host_reads_do_not_grow_with_newton_steps(monkeypatch):
    """Checking every 4 iterations, a solve with several times the Newton steps of another
    reads at most a quarter of the extra iterations more."""
    monkeypatch.setattr(_sinkhorn_newton, "CHECK_EVERY_CPU", 4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 20, 20, generator=g, dtype=torch.float64)
    few, _, it_few, _ = _reads(x / 0.3, tol=1e-8)
    many, _, it_many, info = _reads(x / 1e-3, tol=1e-8)
    assert (info.newton_steps >= 4).all() and it_many > it_few + 4
    assert many - few <= math.ceil((it_many - it_few) / 4) + 1


def test_forbidden_pairs_cost_scipy_once_per_mask(monkeypatch):
    """A fixed mask of ``-inf`` (the diagonal forbidden) at ``N`` in the hundreds: the first
    call finds a permutation avoiding it (scipy), later calls with new scores on the same mask
    only test the remembered permutations (no scipy, a constant number of reads)."""
    sinkhorn_module = sys.modules["pyro_permutations.ops.sinkhorn"]
    n = 300
    g = torch.Generator().manual_seed(5)
    eye = torch.eye(n, dtype=torch.bool)

    def scores():
        x = torch.randn(1, n, n, generator=g) / 0.1
        return x.masked_fill(eye, -torch.inf)

    log_sinkhorn(scores(), tol=1e-3)  # the mask's first call
    calls = []
    real = sinkhorn_module.matching
    monkeypatch.setattr(sinkhorn_module, "matching", lambda *a, **k: calls.append(1) or real(*a))
    x = scores()
    total, counts, iterations, info = _reads(x, tol=1e-3)
    assert calls == [] and info.converged.all()
    assert torch.exp(log_sinkhorn(x, tol=1e-3))[0][eye].max() == 0
    assert total <= VALIDATION_READS + iterations + 1, counts
    # a new mask that no remembered permutation avoids still goes to the exact check
    y = torch.zeros(1, n, n)
    y[0, :, 0] = -torch.inf
    with pytest.raises(ValueError, match="entirely -inf"):
        log_sinkhorn(y)


def test_validate_false_reads_nothing_before_the_loop():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 10, 10, generator=g, dtype=torch.float64)
    on, _, it_on, _ = _reads(x, tol=1e-8)
    off, _, it_off, _ = _reads(x, tol=1e-8, validate=False)
    assert it_on == it_off and off == on - 1


def test_validation_follows_the_global_switch(monkeypatch):
    """``validate=None`` follows ``torch.distributions.Distribution._validate_args`` (what
    ``pyro.enable_validation`` sets): NaN is refused when it is on, not looked for when off."""
    x = torch.randn(2, 4, 4)
    x[0, 0, 0] = torch.nan
    with pytest.raises(ValueError, match="NaN"):
        log_sinkhorn(x)
    monkeypatch.setattr(torch.distributions.Distribution, "_validate_args", False)
    log_sinkhorn(x, max_iter=3)  # not checked: no error (and a meaningless result)
    with pytest.raises(ValueError, match="NaN"):
        log_sinkhorn(x, validate=True)
    with pytest.raises(ValueError, match="validate"):
        log_sinkhorn(x, validate="yes")


def test_unmatched_scores_reads(monkeypatch):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 6, 9, generator=g, dtype=torch.float64) / 0.05
    total, counts, iterations, _ = _reads(x, unmatched_rows=0.0, unmatched_cols=0.0, tol=1e-8)
    assert 1 <= total <= VALIDATION_READS + iterations + 1, counts


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("n, tau", [(12, 0.01), (300, 0.1)])
def test_cuda_synchronisations_are_one_per_check(n, tau):
    """On CUDA: synchronisations counted by torch's sync debug mode (a warning each)."""
    import warnings

    g = torch.Generator().manual_seed(8)
    x = (torch.randn(2, n, n, generator=g) / tau).cuda()
    log_sinkhorn(x, tol=1e-4)  # warm up (kernels, caches)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            _, info = log_sinkhorn(x, tol=1e-4, return_info=True)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    iterations = int(info.iterations.max().item())
    k = _sinkhorn_newton.CHECK_EVERY
    # each check: the flags' copy, and the index copies of a compaction
    assert syncs <= VALIDATION_READS + 3 * (math.ceil(iterations / k) + 1), syncs
