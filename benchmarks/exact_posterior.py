"""Time of ``exact_posterior`` on the matching model for N = 6..9 (all N! permutations).

python benchmarks/exact_posterior.py            # N = 6..9
python benchmarks/exact_posterior.py --quick    # N = 4, 5 (CI smoke run)
"""

import argparse
import time

import pyro
import pyro.distributions as dist
import torch

from pyro_permutations.distributions import FlatBirkhoff
from pyro_permutations.infer import exact_posterior


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print("| N | N! | seconds |\n|---|---|---|")
    for n in (4, 5) if args.quick else (6, 7, 8, 9):
        torch.manual_seed(0)
        centers = torch.randn(n, 2)
        obs = centers[torch.randperm(n)] + 0.3 * torch.randn(n, 2)

        def model(n=n, centers=centers, obs=obs):
            p = pyro.sample("P", FlatBirkhoff(n))
            pyro.sample("y", dist.Normal(p @ centers, 0.3).to_event(2), obs=obs)

        exact_posterior(model, "P")  # warm the permutation table cache
        start = time.perf_counter()
        probs = exact_posterior(model, "P")
        seconds = time.perf_counter() - start
        print(f"| {n} | {probs.numel()} | {seconds:.3f} |", flush=True)


if __name__ == "__main__":
    main()
