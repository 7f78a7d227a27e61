"""Shared pytest set-up: the docstring examples of the library run as doctests."""

import pytest
import torch
from hypothesis import settings


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace["torch"] = torch
    torch.manual_seed(0)


# Property-based tests draw the same examples on every run (reproducible CI).
settings.register_profile("deterministic", derandomize=True, deadline=None)
settings.load_profile("deterministic")
