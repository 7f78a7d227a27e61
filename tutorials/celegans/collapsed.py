"""A collapsed MCMC baseline for [BP] section 6: ``W`` integrated out exactly, Metropolis-Hastings
transpositions on the worms' permutations scored by the closed-form marginal likelihood.

**The marginal likelihood.** With ``X^(j)`` the permutation matrix of ``pi^(j)``
(``X[m, pi[m]] = 1``), the recordings in connectome (label) order, ``Z^(j) = Y^(j) X^(j)``
(``z_t[pi[m]] = y_t[m]``), follow ``z_t = W z_{t-1} + eps_t`` with ``W = c G``,
``G_e ~ N(0, 1)`` on the directed edges of ``A``. So given the permutations, row ``i`` of ``W``
is a Bayesian linear regression of ``r_i`` (the ``z_t[i]``, ``t >= 1``, stacked over worms;
``n = J (T - 1)`` of them) on ``Phi_i = c Z_{0,i}`` (the ``z_{t-1}[k]`` of the ``k_i``
neighbours ``k`` of ``i`` in ``A``), and the rows are independent a priori and a posteriori:

.. math::

    \\log p(Y \\mid \\pi^{(1..J)}) = \\sum_i e_i
        - \\tfrac{nN}{2} \\log(2 \\pi \\sigma^2) - \\tfrac{1}{2\\sigma^2} \\lVert Y_1 \\rVert^2,
    \\qquad
    e_i = -\\tfrac12 \\log\\det \\Lambda_i + \\tfrac12 b_i^\\top \\Lambda_i^{-1} b_i,

    \\Lambda_i = I_{k_i} + \\tfrac{c^2}{\\sigma^2} S_i, \\quad
    b_i = \\tfrac{c}{\\sigma^2} Z_{0,i}^\\top r_i, \\quad
    S_i = Z_{0,i}^\\top Z_{0,i},

(the evidence of ``r_i ~ N(0, sigma^2 I + c^2 Z_{0,i} Z_{0,i}^T)`` by the matrix determinant
lemma and Woodbury). ``sum_i r_i^T r_i = ||Y_1||^2`` (all recorded activity after the first
step) does not depend on the permutations, so only the ``e_i`` move. They are read from the
sufficient statistics pooled over worms, ``G = sum_j G^(j)``, ``G^(j) = Z_0^(j)T Z_0^(j)``,
and ``C = sum_j C^(j)``, ``C^(j) = Z_0^(j)T Z_1^(j)`` (``N x N`` each):
``S_i = G[nb(i), nb(i)]``, ``Z_{0,i}^T r_i = C[nb(i), i]``.

**A transposition.** Swapping labels ``a`` and ``b`` in worm ``j`` (the cells holding them
exchange labels) swaps columns ``a`` and ``b`` of ``Z^(j)``; with ``tau`` that transposition,

.. math::

    G' = G - G^{(j)} + G^{(j)}_{\\tau\\tau}, \\qquad C' = C - C^{(j)} + C^{(j)}_{\\tau\\tau},

which differ from ``G``, ``C`` only in rows and columns ``a`` and ``b``. So only the rows
``R(a, b) = {a, b} ∪ nb(a) ∪ nb(b)`` change their ``e_i`` (``A`` is symmetric), and the log
acceptance ratio is ``sum_{i in R(a, b)} (e'_i - e_i)``: a few dozen ``k_i x k_i`` Cholesky
factorisations, the ``e_i`` of the current state being cached.

**The sampler.** The prior on each permutation is uniform, the proposal symmetric: a label pair
``(j, a, b)`` drawn uniformly from the fixed list of pairs that some cell of worm ``j`` may
carry both of (``allowed[j]^T allowed[j] > 0``, off the diagonal; a known neuron's label is in
no pair, since its column allows only its cell and that cell only it). A pair whose swap would
put a cell on a forbidden label is rejected. Proposals are scored in batches: ``batch`` pairs
are drawn, and the ones whose row sets ``R`` meet the row set of an earlier pair of the batch
are dropped. The kept pairs touch disjoint rows (hence disjoint labels, hence disjoint cells of
one worm), so their moves commute and each one's ratio is the same whatever the others do: the
batch is exactly the product of that many Metropolis-Hastings steps, scored in one batched
call. Which pairs are kept depends on the draws alone, not on the state, so each step stays
reversible with respect to the posterior.

A *sweep* is ``sweep_proposals`` proposals (default: ``N``, or the number of pairs if fewer;
a time budget can end the last sweep early); the state after each sweep is a draw, and the
fitted permutation of each worm is the assignment maximising the marginal frequencies of the
draws after burn-in (the first ``burn_fraction`` of the sweeps), as in
:mod:`tutorials.celegans.mcmc`.
"""

import math
import time

import numpy as np
import torch

from pyro_permutations.ops import invert_perm
from tutorials.celegans.posterior import chain_estimate, spread

DEFAULT_COLLAPSED = {"batch": 32, "burn_fraction": 0.5, "sweep_proposals": None}
#: Padded widths of the neighbour lists, so that rows of low degree are not padded to the hubs'.
WIDTHS = (16, 32)


def label_order(activity, perms):
    """``Z`` ``(J, T, N)``: the recordings in label order, ``Z[j, t, perms[j, m]] = Y[j, t, m]``."""
    z = torch.empty_like(activity)
    return z.scatter_(2, perms[:, None, :].expand_as(activity), activity)


class CollapsedState:
    """The permutations ``(J, N)`` with the sufficient statistics and the cached ``e_i``."""

    def __init__(self, problem, perms):
        self.problem = problem
        y = problem.activity
        self.dtype, self.device = y.dtype, y.device
        n = problem.n
        a = problem.adjacency.to(self.device).bool()
        self.adjacency = a
        deg = a.sum(1)
        self.degree = deg
        k = max(1, int(deg.max()))
        # nbr[i, :deg[i]]: the neighbours of i; padding points at i itself and is masked.
        order = torch.argsort((~a).to(torch.int8), dim=1, stable=True)[:, :k]
        self.valid = torch.arange(k, device=self.device)[None, :] < deg[:, None]
        ar = torch.arange(n, device=self.device)
        self.nbr = torch.where(self.valid, order, ar[:, None])
        self.widths = [w for w in WIDTHS if w < k] + [k]
        self.alpha = problem.scale**2 / problem.sigma**2  # c^2 / sigma^2
        self.beta = problem.scale / problem.sigma**2  # c / sigma^2
        self.perms = perms.clone().to(self.device)
        self.inv = invert_perm(self.perms)
        z = label_order(y, self.perms)
        z0, z1 = z[:, :-1], z[:, 1:]
        self.gram_j = z0.transpose(1, 2) @ z0  # (J, N, N)
        self.cross_j = z0.transpose(1, 2) @ z1
        self.gram = self.gram_j.sum(0)
        self.cross = self.cross_j.sum(0)
        self.e = self.row_evidence(ar)

    # ------------------------------------------------------------------ evidence terms

    def _terms(self, gram_fn, cross_fn, rows):
        """``e_i`` for the rows ``rows`` ``(M,)`` whose ``S`` and ``Z^T r`` entries are
        ``gram_fn(x, x')`` and ``cross_fn(x)`` at neighbour indices ``x`` ``(M, K)``."""
        out = torch.empty(rows.shape, dtype=self.dtype, device=self.device)
        deg = self.degree[rows]
        lo = 0
        for w in self.widths:
            sel = ((deg > lo) & (deg <= w)).nonzero(as_tuple=True)[0]
            if lo == 0:
                out[deg == 0] = 0.0
            lo = w
            if sel.numel() == 0:
                continue
            x = self.nbr[rows[sel], :w]  # (M, w)
            v = self.valid[rows[sel], :w]
            mask = v[:, :, None] & v[:, None, :]
            s = gram_fn(sel, x[:, :, None], x[:, None, :]) * mask
            lam = self.alpha * s + torch.eye(w, dtype=self.dtype, device=self.device)
            b = self.beta * cross_fn(sel, x) * v
            chol = torch.linalg.cholesky(lam)
            u = torch.linalg.solve_triangular(chol, b[:, :, None], upper=False)[:, :, 0]
            logdet = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
            out[sel] = 0.5 * (u * u).sum(-1) - 0.5 * logdet
        return out

    def row_evidence(self, rows):
        """``e_i`` of the current state for ``rows`` ``(M,)``."""
        return self._terms(
            lambda sel, x, xp: self.gram[x, xp],
            lambda sel, x: self.cross[x, rows[sel, None]],
            rows,
        )

    def log_evidence(self):
        """``log p(Y | pi^(1..J))``, ``W`` integrated out (full evaluation, no cache)."""
        p = self.problem
        y1 = p.activity[:, 1:]
        nobs = y1.shape[0] * y1.shape[1]
        rows = torch.arange(p.n, device=self.device)
        const = -0.5 * nobs * p.n * math.log(2 * math.pi * p.sigma**2)
        return (
            float(self.row_evidence(rows).sum()) + const - float((y1**2).sum()) / (2 * p.sigma**2)
        )

    # ------------------------------------------------------------------- proposals

    def affected(self, a, b):
        """``(B, N)`` bool: the rows ``R(a, b)`` of each proposal."""
        n = self.problem.n
        out = self.adjacency[a] | self.adjacency[b]
        ar = torch.arange(a.numel(), device=self.device)
        out[ar, a] = True
        out[ar, b] = True
        return out[:, :n]

    def delta(self, j, a, b):
        """Log acceptance ratios ``(B,)`` of swapping labels ``a`` and ``b`` in worms ``j``
        (each ``(B,)``), each against the current state, with the new ``e_i`` and their
        ``(proposal, row)`` index pairs."""
        members = self.affected(a, b)
        pid, rows = members.nonzero(as_tuple=True)
        jj, aa, bb = j[pid], a[pid], b[pid]

        def tau(x, sel):
            shape = (-1,) + (1,) * (x.dim() - 1)
            aq, bq = aa[sel].view(shape), bb[sel].view(shape)
            return torch.where(x == aq, bq, torch.where(x == bq, aq, x))

        # G' differs from G in rows (and columns) a and b only:
        # G'[a] = G[a] - G^(j)[a] + G^(j)[b, tau(.)], G'[b] likewise, so S'_i is S_i with the
        # row and column at the position of a (and of b) in nb(i) replaced from them.
        nn = torch.arange(self.problem.n, device=self.device)
        tau_all = torch.where(
            nn == a[:, None], b[:, None], torch.where(nn == b[:, None], a[:, None], nn)
        )  # (B, N)
        gj = self.gram_j[j]  # (B, N, N)
        ar = torch.arange(a.numel(), device=self.device)
        new_a = self.gram[a] - gj[ar, a] + gj[ar[:, None], b[:, None], tau_all]  # (B, N)
        new_b = self.gram[b] - gj[ar, b] + gj[ar[:, None], a[:, None], tau_all]

        def gram_new(sel, x, xp):
            x = x[:, :, 0]
            q = pid[sel]
            s = self.gram[x[:, :, None], x[:, None, :]]
            for lab, new in ((aa[sel], new_a), (bb[sel], new_b)):
                m, pos = ((x == lab[:, None]) & self.valid[rows[sel], : x.shape[1]]).nonzero(
                    as_tuple=True
                )
                vals = new[q[m, None], x[m]]  # (r, w): G'[lab, nb(i)]
                s[m, pos] = vals
                s[m, :, pos] = vals
            return s

        def cross_new(sel, x):
            i = rows[sel, None]
            jq = jj[sel, None]
            return (
                self.cross[x, i]
                - self.cross_j[jq, x, i]
                + self.cross_j[jq, tau(x, sel), tau(i, sel)]
            )

        e_new = self._terms(gram_new, cross_new, rows)
        d = torch.zeros(a.shape, dtype=self.dtype, device=self.device)
        d.index_add_(0, pid, e_new - self.e[rows])
        return d, e_new, pid, rows

    def apply(self, j, a, b):
        """Swap labels ``a`` and ``b`` in worm ``j`` (ints) and update the statistics (not
        the cached ``e_i``)."""
        ab, ba = [a, b], [b, a]
        m1, m2 = int(self.inv[j, a]), int(self.inv[j, b])
        self.perms[j, m1], self.perms[j, m2] = b, a
        self.inv[j, a], self.inv[j, b] = m2, m1
        for stat in (self.gram_j, self.cross_j):
            stat[j, ab] = stat[j, ba]
            stat[j, :, ab] = stat[j, :, ba]
        self.gram[ab] = self.gram_j[:, ab].sum(0)
        self.gram[:, ab] = self.gram_j[:, :, ab].sum(0)
        self.cross[ab] = self.cross_j[:, ab].sum(0)
        self.cross[:, ab] = self.cross_j[:, :, ab].sum(0)


def candidate_pairs(allowed):
    """``(P, 3)`` long ``(j, a, b)``, ``a < b``: the label pairs some cell of worm ``j`` may
    carry both of (the only swaps that can be allowed)."""
    m = allowed.to(torch.float32)
    co = (m.transpose(1, 2) @ m) > 0
    co = torch.triu(co, diagonal=1)
    return co.nonzero()


def fit_collapsed(
    problem,
    start,
    seed,
    sweeps=None,
    time_budget=None,
    truth=None,
    known=None,
    every=None,
    hyper=None,
    draws=None,
):
    """Run the collapsed sampler from the permutations ``start`` ``(J, N)``.

    :param int sweeps: sweeps of ``sweep_proposals`` proposals each; with ``time_budget``
        alone, as many as fit in it.
    :param float time_budget: seconds; the run stops after the batch that exceeds it.
    :param truth, known: if both are given, the accuracy of the current estimate is recorded
        every ``every`` sweeps (default: every sweep) beside the elapsed time.
    :returns: ``(perms, history, info)`` as :func:`~tutorials.celegans.mcmc.fit_mcmc`: the
        estimate ``(J, N)``, a list of ``(seconds, accuracy, spread, truth mass)``, and
        ``info`` with ``swap acceptance`` (accepted over proposed), ``valid acceptance``
        (accepted over the proposals the mask allows), ``batch size`` (mean kept pairs per
        batch), ``sweeps`` and ``proposals``.
    """
    from tutorials.celegans.model import accuracy

    if sweeps is None and time_budget is None:
        raise ValueError("give sweeps, time_budget or both, so that the run ends")
    hyper = {**DEFAULT_COLLAPSED, **(hyper or {})}
    generator = torch.Generator().manual_seed(seed)
    every = every or 1
    begin = time.perf_counter()
    state = CollapsedState(problem, start)
    allowed = problem.allowed.to(state.device)
    pairs = candidate_pairs(allowed)
    n_ = problem.n
    per_sweep = hyper["sweep_proposals"] or max(1, min(pairs.shape[0], n_))
    adjacency_np = state.adjacency.cpu().numpy()
    kept_draws = [] if draws is None else draws
    history = []
    proposed = valid_count = accepted = batches = kept_total = 0

    def estimate():
        return chain_estimate(kept_draws, hyper["burn_fraction"], problem.allowed)

    sweep = 0
    while True:
        done_in_sweep = 0
        while pairs.shape[0] and done_in_sweep < per_sweep:
            if time_budget is not None and time.perf_counter() - begin > time_budget:
                break
            draw = torch.randint(pairs.shape[0], (hyper["batch"],), generator=generator)
            cand = pairs[draw.to(pairs.device)].cpu().numpy()
            # Keep the pairs whose row sets are disjoint from those of earlier kept pairs.
            used = np.zeros(n_, dtype=bool)
            keep = []
            for idx, (_, a, b) in enumerate(cand):
                rows = adjacency_np[a] | adjacency_np[b]
                rows[a] = rows[b] = True
                if not (used & rows).any():
                    used |= rows
                    keep.append(idx)
            cand = torch.as_tensor(cand[keep], device=state.device)
            jj, aa, bb = cand[:, 0], cand[:, 1], cand[:, 2]
            m1, m2 = state.inv[jj, aa], state.inv[jj, bb]
            ok = allowed[jj, m1, bb] & allowed[jj, m2, aa]
            proposed += len(keep)
            done_in_sweep += len(keep)
            batches += 1
            kept_total += len(keep)
            if ok.any():
                sel = ok.nonzero(as_tuple=True)[0]
                valid_count += sel.numel()
                d, e_new, pid, rows = state.delta(jj[sel], aa[sel], bb[sel])
                u = torch.rand(sel.numel(), generator=generator, dtype=d.dtype).to(d.device)
                acc = u.log() < d
                if acc.any():
                    for p in acc.nonzero(as_tuple=True)[0].tolist():
                        q = int(sel[p])
                        state.apply(int(jj[q]), int(aa[q]), int(bb[q]))
                    take = acc[pid]
                    state.e[rows[take]] = e_new[take]
                    accepted += int(acc.sum())
        kept_draws.append(state.perms.clone())
        sweep += 1
        elapsed = time.perf_counter() - begin
        done = sweeps is not None and sweep >= sweeps
        out_of_time = time_budget is not None and elapsed > time_budget
        if truth is not None and known is not None and (sweep % every == 0 or done or out_of_time):
            perm, freq = estimate()
            history.append((elapsed, accuracy(perm, truth, known), *spread(freq, truth, known)))
        if done or out_of_time:
            break
    info = {
        "swap acceptance": accepted / max(1, proposed),
        "valid acceptance": accepted / max(1, valid_count),
        "batch size": kept_total / max(1, batches),
        "sweeps": sweep,
        "proposals": proposed,
    }
    return estimate()[0], history, info


def main(argv=None):
    """``python -m tutorials.celegans.collapsed``: the collapsed sampler at a few points of the
    sweep (seed 0, known fraction 0.1) for ``--budget`` seconds each, against the start;
    writes a markdown table to ``--out``."""
    import argparse
    from pathlib import Path

    from tutorials.celegans import experiment as E
    from tutorials.celegans.data import load_connectome

    p = argparse.ArgumentParser(prog="python -m tutorials.celegans.collapsed")
    p.add_argument("--budget", type=float, default=30.0)
    p.add_argument("--points", nargs="+", default=["5:0.01", "5:0.05", "1:0.01"], help="J:nu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "collapsed.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    connectome = load_connectome()
    lines = [
        f"Collapsed MCMC, {args.budget:g} s per point, seed {args.seed}, known fraction 0.1, "
        "N = 279 (`python -m tutorials.celegans.collapsed`)",
        "",
        "| J | nu | start | collapsed | swap acceptance | proposals | proposals / s |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in args.points:
        worms, nu = spec.split(":")
        pt = E.make_point(connectome, int(worms), float(nu), 0.1, args.seed)
        r = E.run_method("mcmc-collapsed", pt, args.budget, args.seed)
        info = r["info"]
        lines.append(
            f"| {worms} | {nu} | {pt.start_accuracy:.3f} | {r['accuracy']:.3f} | "
            f"{info['swap acceptance']:.3f} | {info['proposals']:.0f} | "
            f"{info['proposals'] / r['seconds']:.0f} |"
        )
        print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
