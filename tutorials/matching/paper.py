"""The published numbers: [BP] Table 1 (mean "BD" over 200 repetitions, N = 6)."""

import math

SIGMAS = (0.1, 0.25, 0.5, 0.75)

#: Row label in [BP] Table 1 -> its four numbers, one per sigma. The row labelled
#: theta = 0.5 is almost surely theta = 1 (same numbers in the supplement under theta = 1).
TABLE1 = {
    "stick-breaking": (0.09, 0.23, 0.41, 0.55),
    "rounding": (0.06, 0.21, 0.32, 0.38),
    "mallows-0.1": (0.93, 0.92, 0.89, 0.85),
    "mallows-1": (0.51, 0.53, 0.61, 0.71),
    "mallows-2": (0.23, 0.33, 0.53, 0.69),
    "mallows-5": (0.08, 0.27, 0.54, 0.72),
    "mallows-10": (0.08, 0.27, 0.54, 0.72),
}


def paper_value(method, sigma):
    """[BP] Table 1's value for ``method`` at noise level ``sigma``, or None if the paper has
    none. ``sigma`` is matched to SIGMAS up to float rounding (``0.1`` read back as
    ``0.1000000001`` still finds it), never by its position among the sigmas run."""
    row = TABLE1.get(method)
    if row is None:
        return None
    for s, value in zip(SIGMAS, row):
        if math.isclose(sigma, s, rel_tol=1e-6, abs_tol=1e-12):
            return value
    return None
