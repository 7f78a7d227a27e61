"""Inference helpers: exact posteriors over permutations by enumeration, an MCMC kernel for
permutation sites when ``N`` is too large to enumerate (with marginal assignment
probabilities and convergence diagnostics of its draws), empirical pmfs from samples,
distances between pmfs, and the comparison plot of [BP] Figure 2(b)."""

from pyro_permutations.infer.empirical_pmf import empirical_pmf
from pyro_permutations.infer.exact_posterior import exact_posterior
from pyro_permutations.infer.marginal_assignment import marginal_assignment
from pyro_permutations.infer.permutation_kernel import PermutationKernel
from pyro_permutations.infer.permutation_summary import get_chains, permutation_summary
from pyro_permutations.infer.pmf_distances import (
    bhattacharyya_coefficient,
    bhattacharyya_distance,
    hellinger_distance,
    kl_divergence_pmf,
    total_variation_distance,
)
from pyro_permutations.infer.pmf_plot import plot_pmf_comparison
from pyro_permutations.infer.sampling_noise_floor import sampling_noise_floor

__all__ = [
    "PermutationKernel",
    "bhattacharyya_coefficient",
    "bhattacharyya_distance",
    "empirical_pmf",
    "exact_posterior",
    "get_chains",
    "hellinger_distance",
    "kl_divergence_pmf",
    "marginal_assignment",
    "permutation_summary",
    "plot_pmf_comparison",
    "sampling_noise_floor",
    "total_variation_distance",
]
