"""Pyro distributions over permutations and their continuous relaxations."""
