"""[BP] Figure 1: samples and densities of Gumbel-softmax and stick-breaking on the 2-simplex,
and of stick-breaking and rounding on the Birkhoff polytope B_3, at a few temperatures.

    python -m tutorials.figure1 --out tutorials/figure1/results

The figure is drawn by :func:`pyro_permutations.plotting.plot_relaxations`; this script only
parses the options and saves it.
"""
