"""Transforms onto the Birkhoff polytope, registered with torch/Pyro."""
