"""Data association as a Pyro model, over partial matchings (``python -m
tutorials.association``; docs/tutorials/association.rst)."""
