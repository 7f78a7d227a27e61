"""An exact linear assignment solver written in torch, vectorised over a batch of matrices.

It is the shortest-augmenting-path method (Jonker-Volgenant; the variant of [C] that
:func:`scipy.optimize.linear_sum_assignment` runs), with every matrix of the batch advanced in
lockstep: one step of the loop does, for every matrix at once, either one step of Dijkstra's
search (scan one row, settle the nearest unvisited column) or one step along an augmenting path
found earlier. A matrix whose search ends moves on to its next free row at once, so the loop
runs about as many steps as the matrix that needs the most, not the batch's sum. No step reads
a value back to the host; on CUDA the loop asks whether every matrix is done only once every
``check_every`` steps (a finished matrix's extra steps change nothing).

**Exactness.** The method keeps dual potentials ``u`` (rows) and ``v`` (columns) with reduced
costs ``c_ij - u_i - v_j >= 0`` everywhere and ``= 0`` on every assigned pair, and the
unassigned columns at ``v_j = 0 >= v_k``: the linear-programming optimality conditions, so
each augmentation leaves a minimum-cost assignment of the rows assigned so far, and the last
one an optimal assignment of every row ([C] section 3). It is exact in the same sense as
scipy's solver: in float64 arithmetic, up to its rounding (the optimal total is found to within
a few units in the last place of the largest partial sums). The start is the row reduction
``u_i = min_j c_ij``, ``v = 0`` (feasible), with each row given its smallest column when no
earlier row took it (tight, so the conditions hold from the start).

**Forbidden pairs** are ``+inf`` costs: a search that finds every unvisited column at infinite
distance proves (Hall's theorem, through the alternating tree it built) that no assignment
avoids them, and that matrix is reported as infeasible.

References:

[C] D. F. Crouse. On implementing 2D rectangular assignment algorithms. IEEE Transactions on
Aerospace and Electronic Systems 52(4), 2016, Algorithm 1 and section 3.
"""

import torch

#: Costs are scaled down, by a power of two per matrix, until their finite entries are at most
#: ``2^MAX_COST_EXPONENT`` in magnitude, so that the potentials and path lengths (sums of up to
#: ``2 N`` of them) stay below float64's largest number; a power of two is exact and a positive
#: factor leaves the minimisers unchanged (as in :mod:`pyro_permutations.ops.matching`).
MAX_COST_EXPONENT = 1000

_SEARCH, _AUGMENT, _DONE = 0, 1, 2


def _scaled_down(cost):
    """``cost`` ``(B, N, M)`` (float64) with each matrix whose finite entries exceed
    ``2^MAX_COST_EXPONENT`` in magnitude multiplied by a power of two that brings them below
    it; computed without reading anything back to the host."""
    finite = torch.isfinite(cost)
    largest = torch.where(finite, cost.abs(), 0.0).amax((-2, -1), keepdim=True)
    exponent = torch.frexp(largest).exponent  # largest < 2^exponent
    shift = torch.clamp(MAX_COST_EXPONENT - exponent, max=0)
    return torch.ldexp(cost, shift.to(cost.dtype))


def solve_assignment(cost, check_every=None):
    """Minimum-cost assignment of every row of each matrix of ``cost`` to a distinct column.

    .. math::

        \\mathrm{col}^\\star = \\arg\\min_{\\mathrm{col}\\ \\mathrm{injective}}
            \\sum_{i=0}^{N-1} c_{i, \\mathrm{col}(i)}

    :param torch.Tensor cost: float32 or float64 tensor ``(B, N, M)`` with ``N <= M``, finite
        or ``+inf`` (a forbidden pair); no NaN, no ``-inf`` (the caller checks). Solved in
        float64 on ``cost``'s device.
    :param int check_every: steps between the checks of whether every matrix is done (each is
        a host synchronisation); default 1 on CPU (where it costs nothing) and 32 elsewhere.
    :returns: ``(col, infeasible)``: a long tensor ``(B, N)`` with ``col[b, i]`` the column of
        row ``i`` (distinct columns per matrix) and a bool tensor ``(B,)`` marking the matrices
        with no assignment that avoids their ``+inf`` entries (their ``col`` is partial, with
        ``-1`` for rows left out).

    Example::

        >>> cost = torch.tensor([[[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]]])
        >>> solve_assignment(cost)
        (tensor([[1, 0, 2]]), tensor([False]))
    """
    batch, n, m = cost.shape
    if n > m:
        raise ValueError(f"cost must have shape (B, N, M) with N <= M, got {tuple(cost.shape)}")
    device = cost.device
    if check_every is None:
        check_every = 1 if device.type == "cpu" else 32
    cost = _scaled_down(cost.to(torch.float64))
    inf = float("inf")
    b_idx = torch.arange(batch, device=device)
    rows = torch.arange(n, device=device)

    # Start: row reduction (feasible duals) and each row's smallest column, if no earlier row
    # has it (a tight pair). Rows with no finite cost keep u = 0 and are found infeasible.
    low, best = cost.min(-1)
    u = torch.zeros(batch, n + 1, dtype=torch.float64, device=device)  # slot n: a dummy
    u[:, :n] = torch.where(torch.isinf(low), 0.0, low)
    v = torch.zeros(batch, m, dtype=torch.float64, device=device)
    claim = torch.full((batch, m), n, dtype=torch.long, device=device)
    claim.scatter_reduce_(1, best, rows.expand(batch, n), "amin")
    mine = (claim.gather(1, best) == rows) & torch.isfinite(low)
    col4row = torch.full((batch, n + 1), -1, dtype=torch.long, device=device)  # slot n: dummy
    col4row[:, :n] = torch.where(mine, best, -1)
    row4col = torch.full((batch, m + 1), -1, dtype=torch.long, device=device)  # slot m: dummy
    row4col.scatter_(1, torch.where(mine, best, m), rows.expand(batch, n))
    row4col[:, m] = -1

    # Per-matrix search state: the root row `cur` being assigned, the row `i` being scanned,
    # Dijkstra's distances `dist` and predecessor rows `pred` of the columns, the settled
    # columns and the rows reached, and the last settled distance `reach`.
    free_rows = col4row[:, :n] < 0
    has_free = free_rows.any(-1)
    cur = free_rows.to(torch.uint8).argmax(-1)
    i = cur.clone()
    mode = torch.where(has_free, _SEARCH, _DONE)
    reach = torch.zeros(batch, dtype=torch.float64, device=device)
    dist = torch.full((batch, m), inf, dtype=torch.float64, device=device)
    pred = torch.zeros((batch, m), dtype=torch.long, device=device)
    settled = torch.zeros((batch, m), dtype=torch.bool, device=device)
    reached = torch.zeros((batch, n + 1), dtype=torch.bool, device=device)
    reached[b_idx, cur] = True
    tail = torch.zeros(batch, dtype=torch.long, device=device)  # column walking back a path
    infeasible = torch.zeros(batch, dtype=torch.bool, device=device)

    def step():
        nonlocal u, v, dist, pred, settled, reached, i, cur, mode, reach, tail, infeasible
        # One Dijkstra step for the searching matrices: relax the columns from row i ...
        search = mode == _SEARCH
        r = (reach - u[b_idx, i]).unsqueeze(-1) + cost[b_idx, i] - v
        better = (r < dist) & ~settled & search.unsqueeze(-1)
        dist = torch.where(better, r, dist)
        pred = torch.where(better, i.unsqueeze(-1), pred)
        # ... and settle the nearest unsettled column, a free one among equals.
        key = dist.masked_fill(settled, inf)
        lowest = key.amin(-1)
        nearest = key == lowest.unsqueeze(-1)
        free = row4col[:, :m] < 0
        j = (nearest.to(torch.uint8) + (nearest & free)).argmax(-1)
        stuck = search & torch.isinf(lowest)  # every unsettled column unreachable
        infeasible = infeasible | stuck
        search = search & ~stuck
        reach = torch.where(search, lowest, reach)
        settled = settled | (search.unsqueeze(-1) & (torch.arange(m, device=device) == j[:, None]))
        owner = row4col[b_idx, j]
        found = search & (owner < 0)
        go_on = search & (owner >= 0)
        i = torch.where(go_on, owner, i)
        reached[b_idx, torch.where(go_on, owner, n)] = True
        # A free column reached: update the duals (Crouse's Algorithm 1, lines 24-26) ...
        at = torch.gather(dist, 1, col4row[:, :n].clamp(min=0))
        lift = reached[:, :n] & found.unsqueeze(-1) & (rows != cur.unsqueeze(-1))
        u[:, :n] += torch.where(lift, reach.unsqueeze(-1) - at, 0.0)
        u[b_idx, cur] += torch.where(found, reach, 0.0)
        v = v - torch.where(settled & found.unsqueeze(-1), reach.unsqueeze(-1) - dist, 0.0)
        mode = torch.where(found, _AUGMENT, torch.where(stuck, _DONE, mode))
        tail = torch.where(found, j, tail)
        # ... and walk one step back along each augmenting path, flipping its pair.
        augment = mode == _AUGMENT
        row = pred[b_idx, tail]
        row4col[b_idx, torch.where(augment, tail, m)] = row
        before = col4row[b_idx, row]
        col4row[b_idx, torch.where(augment, row, n)] = tail
        tail = torch.where(augment, before, tail)
        # A finished path: on to the next free row, or done.
        finished = augment & (row == cur)
        free_rows = col4row[:, :n] < 0
        start = finished & free_rows.any(-1)
        nxt = free_rows.to(torch.uint8).argmax(-1)
        mode = torch.where(finished, torch.where(start, _SEARCH, _DONE), mode)
        cur = torch.where(start, nxt, cur)
        i = torch.where(start, nxt, i)
        reach = torch.where(start, 0.0, reach)
        dist = dist.masked_fill(start.unsqueeze(-1), inf)
        settled = settled & ~start.unsqueeze(-1)
        reached = reached & ~start.unsqueeze(-1)
        reached[b_idx, torch.where(start, nxt, n)] = True

    while True:
        for _ in range(check_every):
            step()
        if not bool((mode != _DONE).any()):
            break
    return col4row[:, :n], infeasible


def maximise_batch(scores):
    """The best (partial) matchings ``(B, N)`` of ``scores`` ``(B, N, M)`` (a torch tensor,
    ``-inf`` for forbidden pairs) and the first problem met, as
    :func:`pyro_permutations.ops.matching`'s scipy path reports them: ``None``,
    ``(0, "invalid")`` for NaN or ``+inf`` scores, or ``(b, "infeasible")`` for the first
    matrix ``b`` with no matching of ``min(N, M)`` pairs avoiding its ``-inf`` entries. For
    ``N > M`` the transpose is solved and the ``N - M`` rows left over get ``-1``."""
    batch, n, m = scores.shape
    if batch == 0:
        return torch.zeros((0, n), dtype=torch.long, device=scores.device), None
    if bool((torch.isnan(scores) | torch.isposinf(scores)).any()):
        return None, (0, "invalid")
    cost = scores.to(torch.float64).neg()  # -inf (forbidden) becomes +inf
    if n <= m:
        out, infeasible = solve_assignment(cost)
    else:
        cols, infeasible = solve_assignment(cost.transpose(-2, -1))
        out = torch.full((batch, n), -1, dtype=torch.long, device=scores.device)
        out.scatter_(1, cols.clamp(min=0), torch.arange(m, device=scores.device).expand(batch, m))
    if bool(infeasible.any()):
        return out, (int(infeasible.to(torch.uint8).argmax()), "infeasible")
    return out, None
