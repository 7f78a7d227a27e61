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
a few units in the last place of the largest partial sums). The start is a few rounds of a
Jacobi auction with no increment ([B]; :func:`_auction_start`): all free rows of all matrices
bid at once, which leaves a few percent of the rows free, with duals that meet the same
conditions; the shortest paths assign the rest. Ties cost nothing to exactness (a search
settles any nearest column, a free one first).

**Cost.** A step is about fifty tensor operations on ``(B, M)`` arrays; the steps number about
``k M`` for the ``k`` rows the auction leaves free (a search settles many columns when the
duals are nearly optimal), a few thousand for ``N`` in the hundreds. On the CPU, where each
operation costs microseconds of dispatch, this is far slower than scipy's compiled loop
(``python -m benchmarks --only peers_matching``), so :func:`~pyro_permutations.ops.matching` uses it
only for CUDA tensors, to keep them on the device.

**Forbidden pairs** are ``+inf`` costs: a search that finds every unvisited column at infinite
distance proves (Hall's theorem, through the alternating tree it built) that no assignment
avoids them, and that matrix is reported as infeasible.

References:

[B] D. P. Bertsekas. The auction algorithm: a distributed relaxation method for the
assignment problem. Annals of Operations Research 14, 1988 (the Jacobi variant, section 3).

[C] D. F. Crouse. On implementing 2D rectangular assignment algorithms. IEEE Transactions on
Aerospace and Electronic Systems 52(4), 2016, Algorithm 1 and section 3.
"""

import torch

#: Costs are scaled down, by a power of two per matrix, until their finite entries are at most
#: ``2^MAX_COST_EXPONENT`` in magnitude, so that the potentials and path lengths (sums of up to
#: ``2 N`` of them) stay below float64's largest number; a power of two is exact and a positive
#: factor leaves the minimisers unchanged (as in :mod:`pyro_permutations.ops.matching`).
MAX_COST_EXPONENT = 1000

#: Rounds of the auction that gives the shortest-path method its start, off and on the CPU:
#: each assigns most of the rows still free at no cost to exactness (see `_auction_start`).
START_ROUNDS = 32
START_ROUNDS_CPU = 8

_SEARCH, _AUGMENT, _DONE = 0, 1, 2


def _auction_start(cost, rounds):
    """Column potentials ``v`` ``(B, M)`` and a partial assignment (``col4row`` ``(B, N + 1)``,
    ``-1`` for a free row; ``row4col`` ``(B, M + 1)``, ``N`` for a free column; the last
    entries are dummies) in which every assigned row is at a column minimising its reduced
    cost ``c_ij - v_j``: ``rounds`` rounds of a Jacobi auction with no increment [B].

    In a round every free row bids for its best column ``j1``, by its margin ``gap`` (its
    second-best reduced cost minus its best); each column bid for goes to its largest bidder,
    at ``v_j -= gap``, and its former owner becomes free. The winner's reduced cost at ``j1``
    then equals its second best (to the rounding of that subtraction), and other columns'
    ``v`` only fall, so every assigned row stays at a minimum; the free columns, never bid
    for, keep ``v = 0 >= v_k``. These are the conditions the shortest-path method starts
    from, whatever the number of rounds (with no increment the auction need not terminate,
    so it is cut off and only gives a start).
    """
    batch, n, m = cost.shape
    device = cost.device
    rows = torch.arange(n, device=device).expand(batch, n)
    columns = torch.arange(m, device=device).expand(batch, m)
    v = torch.zeros(batch, m, dtype=torch.float64, device=device)
    col4row = torch.full((batch, n + 1), -1, dtype=torch.long, device=device)
    row4col = torch.full((batch, m + 1), n, dtype=torch.long, device=device)
    for _ in range(rounds):
        reduced = cost - v.unsqueeze(-2)
        if m > 1:
            values, index = reduced.topk(2, dim=-1, largest=False)
            first, second, j1 = values[..., 0], values[..., 1], index[..., 0]
            gap = torch.where(torch.isfinite(second), second - first, 0.0)
        else:
            first, j1 = reduced.min(-1)
            gap = torch.zeros_like(first)
        bidding = (col4row[:, :n] < 0) & torch.isfinite(first)
        bid = torch.where(bidding, gap, -1.0)
        best = torch.full((batch, m), -1.0, dtype=torch.float64, device=device)
        best.scatter_reduce_(1, j1, bid, "amax")
        top = bidding & (bid == best.gather(1, j1))
        winner = torch.full((batch, m), n, dtype=torch.long, device=device)
        winner.scatter_reduce_(1, j1, torch.where(top, rows, n), "amin")
        won = winner < n
        v = torch.where(won, v - best.clamp(min=0.0), v)
        col4row.scatter_(1, torch.where(won, row4col[:, :m], n), -1)  # the former owners
        row4col[:, :m] = torch.where(won, winner, row4col[:, :m])
        col4row.scatter_(1, torch.where(won, winner, n), columns)
    col4row[:, n] = -1
    row4col[:, m] = n
    return v, col4row, row4col


def _scaled_down(cost):
    """``cost`` ``(B, N, M)`` (float64) with each matrix whose finite entries exceed
    ``2^MAX_COST_EXPONENT`` in magnitude multiplied by a power of two that brings them below
    it; computed without reading anything back to the host."""
    finite = torch.isfinite(cost)
    largest = torch.where(finite, cost.abs(), 0.0).amax((-2, -1), keepdim=True)
    exponent = torch.frexp(largest).exponent  # largest < 2^exponent
    shift = torch.clamp(MAX_COST_EXPONENT - exponent, max=0)
    return torch.ldexp(cost, shift.to(cost.dtype))


def _step(cost, order, count, state):
    """One step of the lockstep loop of :func:`solve_assignment` on every matrix; ``state``
    (a tuple of tensors, some updated in place) in, the next state out."""
    (u, v, row4col, col4row, tentative, settled, pred, v_open) = state[:8]
    (i, cur, pos, mode, reach, tail, infeasible) = state[8:]
    batch, n, m = cost.shape
    b_idx = torch.arange(batch, device=cost.device)
    inf = float("inf")
    # One Dijkstra step for the searching matrices: relax the columns from row i (the
    # others get +inf offsets and change nothing) ...
    search = mode == _SEARCH
    offset = torch.where(search, reach - u[b_idx, i], inf)
    r = cost[b_idx, i] - v_open + offset.unsqueeze(-1)
    better = r < tentative
    pred = torch.where(better, i.unsqueeze(-1), pred)
    tentative = torch.minimum(tentative, r)
    # ... and settle the nearest unsettled column, a free one among equals (writing at
    # the column picked in a matrix not searching is harmless: its search state is reset
    # before it searches again).
    lowest = tentative.amin(-1)
    nearest = tentative == lowest.unsqueeze(-1)
    j = (nearest.to(torch.uint8) + (nearest & (row4col[:, :m] == n))).argmax(-1)
    tentative[b_idx, j] = inf
    settled[b_idx, j] = lowest
    v_open[b_idx, j] = -inf
    ok = search & torch.isfinite(lowest)
    stuck = search & ~ok  # every unsettled column unreachable: no assignment exists
    infeasible = infeasible | stuck
    reach = torch.where(ok, lowest, reach)
    owner = row4col[b_idx, j]
    found = ok & (owner == n)
    i = torch.where(ok & ~found, owner, i)
    # A free column reached: update the duals (Crouse's Algorithm 1, lines 24-26; the row
    # reached through a settled column is its owner) ...
    lift = torch.where(found.unsqueeze(-1), (reach.unsqueeze(-1) - settled).clamp_(min=0), 0.0)
    v = v - lift
    u.scatter_add_(1, row4col[:, :m], lift)
    u.scatter_add_(1, cur.unsqueeze(-1), torch.where(found, reach, 0.0).unsqueeze(-1))
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
    start = finished & (pos + 1 < count)
    nxt = order.gather(1, (pos + 1).clamp_(max=n - 1).unsqueeze(-1)).squeeze(-1)
    mode = torch.where(finished, torch.where(start, _SEARCH, _DONE), mode)
    pos = torch.where(start, pos + 1, pos)
    cur = torch.where(start, nxt, cur)
    i = torch.where(start, nxt, i)
    reach = torch.where(start, 0.0, reach)
    restart = start.unsqueeze(-1)
    tentative = tentative.masked_fill(restart, inf)
    settled = settled.masked_fill(restart, inf)
    v_open = torch.where(restart, v, v_open)
    return (u, v, row4col, col4row, tentative, settled, pred, v_open) + (
        i,
        cur,
        pos,
        mode,
        reach,
        tail,
        infeasible,
    )


def solve_assignment(cost, check_every=None, rounds=None):
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
    if rounds is None:
        rounds = START_ROUNDS_CPU if device.type == "cpu" else START_ROUNDS
    cost = _scaled_down(cost.to(torch.float64))
    inf = float("inf")

    # Start: the duals and assignment of `rounds` rounds of a Jacobi auction (below), from
    # v = 0 with every row free. Index n of the row arrays and m of the column arrays are
    # dummies that masked writes go to.
    v, col4row, row4col = _auction_start(cost, rounds)
    low = (cost - v.unsqueeze(-2)).amin(-1)
    u = torch.zeros(batch, n + 1, dtype=torch.float64, device=device)
    u[:, :n] = torch.where(torch.isinf(low), 0.0, low)  # rows with no finite cost: infeasible
    mine = col4row[:, :n] >= 0
    # The rows left free, in order: `order[b, :count[b]]`; `pos` points at the current one.
    free_rows = ~mine
    count = free_rows.sum(-1)
    order = torch.argsort(free_rows.to(torch.uint8), dim=-1, descending=True, stable=True)
    pos = torch.zeros(batch, dtype=torch.long, device=device)

    # Per-matrix search state: the root row `cur` being assigned, the row `i` being scanned,
    # the tentative distances `tentative` of the unsettled columns (+inf once settled), the
    # distances `settled` of the settled ones (+inf before), the predecessor rows `pred`, the
    # column potentials `v_open` with -inf at settled columns (so that relaxing them gives
    # +inf), and the last settled distance `reach`.
    cur = order[:, 0]
    i = cur.clone()
    mode = torch.where(count > 0, _SEARCH, _DONE)
    reach = torch.zeros(batch, dtype=torch.float64, device=device)
    tentative = torch.full((batch, m), inf, dtype=torch.float64, device=device)
    settled = torch.full((batch, m), inf, dtype=torch.float64, device=device)
    pred = torch.zeros((batch, m), dtype=torch.long, device=device)
    v_open = v.clone()
    tail = torch.zeros(batch, dtype=torch.long, device=device)  # column walking back a path
    infeasible = torch.zeros(batch, dtype=torch.bool, device=device)

    state = (u, v, row4col, col4row, tentative, settled, pred, v_open)
    state += (i, cur, pos, mode, reach, tail, infeasible)
    while True:
        for _ in range(check_every):
            state = _step(cost, order, count, state)
        if not bool((state[11] != _DONE).any()):
            break
    return state[3][:, :n], state[14]


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
