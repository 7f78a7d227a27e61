import pytest
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
    assert repr(constraints.permutation) == "Permutation()"
    assert repr(constraints.permutation_matrix) == "PermutationMatrix()"
