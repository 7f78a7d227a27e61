"""Pictures of the relaxations: [BP] Figure 1 (:func:`plot_relaxations`) and the linear maps
that draw the 2-simplex and the Birkhoff polytope ``B_3`` in the plane.

matplotlib is imported only when a figure is drawn; the functions return a bare
``matplotlib.figure.Figure`` (no pyplot state, works without a display).
"""

from pyro_permutations.plotting.projections import birkhoff3_to_plane, simplex_to_plane
from pyro_permutations.plotting.relaxations import plot_relaxations

__all__ = ["birkhoff3_to_plane", "plot_relaxations", "simplex_to_plane"]
