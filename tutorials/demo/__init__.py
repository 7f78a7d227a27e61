"""A short demonstration of the Sinkhorn and matching operators (``python -m tutorials.demo``)."""
