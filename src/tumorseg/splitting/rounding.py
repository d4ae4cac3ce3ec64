"""Controlled rounding of a two-way table, found exactly as a small min-cost flow.

Given row sizes ``n_s`` and column ratios ``r_k`` (exact fractions summing to 1),
:func:`controlled_round` returns an integer table whose rows sum to ``n_s``, whose cells
are ``n_s * r_k`` rounded down or up, and whose column sums are ``N * r_k`` (``N`` the
total) rounded down or up. Such a table always exists. Among the valid ones it prefers, in
this order: the column sums with the largest fractional parts rounding up, then per row
the cells with the largest fractional parts rounding up, then the column listed first.
Remaining ties are settled by the fixed search order (rows in the order given), never by
chance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction


def _min_cost_flow(n_nodes: int, edges: list[tuple[int, int, int, int]], source: int, sink: int):
    """Min-cost max-flow by successive shortest paths (SPFA; the graph given has no
    negative cycle). Returns the flow on each edge, in the order given."""
    to: list[int] = []
    cap: list[int] = []
    cost: list[int] = []
    adj: list[list[int]] = [[] for _ in range(n_nodes)]
    for u, v, c, w in edges:
        adj[u].append(len(to))
        to.append(v)
        cap.append(c)
        cost.append(w)
        adj[v].append(len(to))
        to.append(u)
        cap.append(0)
        cost.append(-w)
    while True:
        dist: list[int | None] = [None] * n_nodes
        via: list[int] = [-1] * n_nodes
        dist[source] = 0
        queue = [source]
        queued = [False] * n_nodes
        queued[source] = True
        head = 0
        while head < len(queue):
            u = queue[head]
            head += 1
            queued[u] = False
            for e in adj[u]:
                if cap[e] <= 0:
                    continue
                v = to[e]
                d = dist[u] + cost[e]
                if dist[v] is None or d < dist[v]:
                    dist[v] = d
                    via[v] = e
                    if not queued[v]:
                        queued[v] = True
                        queue.append(v)
        if dist[sink] is None:
            break
        push = None
        v = sink
        while v != source:
            e = via[v]
            push = cap[e] if push is None else min(push, cap[e])
            v = to[e ^ 1]
        v = sink
        while v != source:
            e = via[v]
            cap[e] -= push
            cap[e ^ 1] += push
            v = to[e ^ 1]
    return [cap[2 * i + 1] for i in range(len(edges))]


def controlled_round(sizes: Sequence[int], ratios: Sequence[Fraction]) -> list[list[int]]:
    """Integer table ``x[s][k]`` with row sums ``sizes[s]``, each cell ``sizes[s]*ratios[k]``
    rounded down or up, and each column sum ``sum(sizes)*ratios[k]`` rounded down or up.

    ``ratios`` must be exact fractions summing to 1. Preferences among the valid tables are
    described in the module docstring.
    """
    ratios = [Fraction(r) for r in ratios]
    if sum(ratios) != 1:
        raise ValueError("ratios must sum to 1")
    n_rows, n_cols = len(sizes), len(ratios)
    t = [[n * r for r in ratios] for n in sizes]
    low = [[math.floor(v) for v in row] for row in t]
    ups = [sizes[s] - sum(low[s]) for s in range(n_rows)]
    total_ups = sum(ups)
    col_target = [sum((t[s][k] for s in range(n_rows)), Fraction(0)) for k in range(n_cols)]
    col_low = [sum(low[s][k] for s in range(n_rows)) for k in range(n_cols)]
    need_min = [math.floor(col_target[k]) - col_low[k] for k in range(n_cols)]
    need_max = [math.ceil(col_target[k]) - col_low[k] for k in range(n_cols)]
    x = [row[:] for row in low]
    if total_ups == 0:
        return x

    denom = 1
    for v in [*(v for row in t for v in row), *col_target]:
        denom = math.lcm(denom, v.denominator)

    def frac(v: Fraction) -> int:
        return int((v - math.floor(v)) * denom)

    # lexicographic weights: mandatory column minimum > column remainders > cell
    # remainders > column order
    b4 = total_ups * (n_cols - 1)
    w3 = b4 + 1
    b3 = b4 + w3 * total_ups * denom
    w2 = b3 + 1
    b2 = b3 + w2 * total_ups * denom
    w1 = b2 + 1

    source, sink = 0, 1
    row_node = [2 + s for s in range(n_rows)]
    col_node = [2 + n_rows + k for k in range(n_cols)]
    edges: list[tuple[int, int, int, int]] = []
    for s in range(n_rows):
        if ups[s]:
            edges.append((source, row_node[s], ups[s], 0))
    cell_edges: list[tuple[int, int, int]] = []
    for s in range(n_rows):
        for k in range(n_cols):
            f = frac(t[s][k])
            if f > 0:
                cell_edges.append((len(edges), s, k))
                edges.append((row_node[s], col_node[k], 1, -w3 * f + k))
    for k in range(n_cols):
        if need_min[k] > 0:
            edges.append((col_node[k], sink, need_min[k], -w1))
        if need_max[k] > need_min[k]:
            edges.append((col_node[k], sink, need_max[k] - need_min[k], -w2 * frac(col_target[k])))
    flow = _min_cost_flow(2 + n_rows + n_cols, edges, source, sink)
    for i, s, k in cell_edges:
        x[s][k] += flow[i]
    for s in range(n_rows):
        if sum(x[s]) != sizes[s]:  # pragma: no cover - a bug, not bad input
            raise RuntimeError(f"controlled rounding failed for sizes {sizes}, ratios {ratios}")
    for k in range(n_cols):
        col = sum(x[s][k] for s in range(n_rows))
        if not math.floor(col_target[k]) <= col <= math.ceil(col_target[k]):  # pragma: no cover
            raise RuntimeError(f"controlled rounding failed for sizes {sizes}, ratios {ratios}")
    return x
