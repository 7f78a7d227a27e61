"""Benchmarks of pyro_permutations side by side with its peers: ``python -m benchmarks``."""
