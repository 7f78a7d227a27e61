"""The published numbers: [GS] Table 1 (Prop. any wrong; trained on U(0,1) lists).

Mena, Belanger, Linderman, Snoek. Learning Latent Permutations with Gumbel-Sinkhorn Networks.
ICLR 2018, Table 1. The paper's number of training steps and test-set sizes are not confirmed.
"""

#: The list lengths of Table 1.
NS = (5, 10, 15, 80, 100, 120)

#: The test intervals of Table 1, ``(label, low, high)``: lists are drawn from U(low, high).
INTERVALS = (
    ("U(0,1)", 0.0, 1.0),
    ("U(0,10)", 0.0, 10.0),
    ("U(0,1000)", 0.0, 1000.0),
    ("U(1,2)", 1.0, 2.0),
    ("U(10,11)", 10.0, 11.0),
    ("U(100,101)", 100.0, 101.0),
    ("U(1000,1001)", 1000.0, 1001.0),
)

#: Interval label -> Prop. any wrong for N = 5, 10, 15, 80, 100, 120.
TABLE1 = {
    "U(0,1)": (0.0, 0.0, 0.0, 0.0, 0.0, 0.01),
    "U(0,10)": (0.0, 0.0, 0.0, 0.0, 0.02, 0.03),
    "U(0,1000)": (0.0, 0.0, 0.0, 0.01, 0.02, 0.04),
    "U(1,2)": (0.0, 0.0, 0.0, 0.01, 0.04, 0.08),
    "U(10,11)": (0.0, 0.0, 0.0, 0.08, 0.08, 0.6),
    "U(100,101)": (0.0, 0.0, 0.01, 0.02, 0.99, 1.0),
    "U(1000,1001)": (0.0, 0.0, 0.07, 1.0, 1.0, 1.0),
}

#: The paper's comparison row (Vinyals et al. 2015, pointer networks, on U(0,1)); N = 80..120
#: are not reported. Shown beside our table only: we do not run it.
VINYALS = (0.06, 0.43, 0.9, None, None, None)


def paper_value(label, n):
    """[GS] Table 1's Prop. any wrong at ``label`` and ``n``, or None if not reported."""
    if label not in TABLE1 or n not in NS:
        return None
    return TABLE1[label][NS.index(n)]
