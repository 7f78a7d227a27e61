"""Inference helpers: exact posteriors over permutations by enumeration, empirical pmfs from
samples, distances between pmfs, and the comparison plot of [BP] Figure 2(b)."""

from pyro_permutations.infer.empirical_pmf import empirical_pmf
from pyro_permutations.infer.exact_posterior import exact_posterior
from pyro_permutations.infer.pmf_distances import (
    bhattacharyya_coefficient,
    bhattacharyya_distance,
    hellinger_distance,
    kl_divergence_pmf,
    total_variation_distance,
)
from pyro_permutations.infer.pmf_plot import plot_pmf_comparison

__all__ = [
    "bhattacharyya_coefficient",
    "bhattacharyya_distance",
    "empirical_pmf",
    "exact_posterior",
    "hellinger_distance",
    "kl_divergence_pmf",
    "plot_pmf_comparison",
    "total_variation_distance",
]
