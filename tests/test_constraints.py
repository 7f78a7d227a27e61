import pytest
import torch
from torch.distributions.constraints import Constraint

from pyro_permutations import constraints

PUBLIC = [getattr(constraints, name) for name in constraints.__all__]
INSTANCES = [c for c in PUBLIC if isinstance(c, Constraint)]


def test_every_public_constraint_class_has_an_instance():
    classes = {c for c in PUBLIC if isinstance(c, type)}
    assert classes == {type(c) for c in INSTANCES}


@pytest.mark.parametrize("constraint", INSTANCES, ids=lambda c: type(c).__name__)
def test_repr_names_the_class(constraint):
    # torch's Constraint.__repr__ drops the first letter of the class name.
    text = repr(constraint)
    assert text.startswith(type(constraint).__name__ + "(") and text.endswith(")")


def test_reprs():
    assert repr(constraints.birkhoff) == "Birkhoff(atol=0.0001)"
    assert repr(constraints.column_stochastic) == "ColumnStochastic(atol=0.0001)"
    assert repr(constraints.permutation) == "Permutation()"
    assert repr(constraints.permutation_matrix) == "PermutationMatrix()"


def test_column_stochastic_checks_columns_and_signs_only():
    torch.manual_seed(0)
    x = torch.rand(5, 3, 4)
    x = x / x.sum(-2, keepdim=True)
    assert constraints.column_stochastic.check(x).all()
    assert not constraints.birkhoff.check(x).any()  # rows are free, matrices need not be square
    assert constraints.column_stochastic.check(torch.full((2, 4, 4), 0.25)).all()
    assert not constraints.column_stochastic.check(2 * x).any()
    shifted = x.clone()
    shifted[:, 0, 0] -= 2.0
    shifted[:, 1, 0] += 2.0
    assert not constraints.column_stochastic.check(shifted).any()  # a negative entry
    assert constraints.column_stochastic.check(x).shape == (5,)
