"""ablate.cuda.compat: numba-cuda keeps compiling under a NumPy that removed an alias it
registers (np.row_stack, gone in NumPy 2.5; seen on the lent H200's image)."""

from types import ModuleType

import numpy as np
import pytest

from ablate.cuda.compat import restore_numpy_aliases


def numpy_like(**names) -> ModuleType:
    module = ModuleType("numpy_like")
    module.vstack = np.vstack
    vars(module).update(names)
    return module


def test_a_numpy_without_row_stack_gets_vstack_under_that_name():
    module = numpy_like()
    assert restore_numpy_aliases(module) == ["row_stack"]
    assert module.row_stack is np.vstack
    assert restore_numpy_aliases(module) == []  # once is enough


def test_a_numpy_that_has_row_stack_keeps_its_own():
    own = object()
    module = numpy_like(row_stack=own)
    assert restore_numpy_aliases(module) == []
    assert module.row_stack is own


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # NumPy < 2.5 warns on the alias
def test_importing_the_cuda_backend_leaves_numpy_with_row_stack():
    import ablate.cuda  # noqa: F401

    stacked = np.row_stack([np.zeros(2), np.ones(2)])
    assert stacked.tolist() == [[0.0, 0.0], [1.0, 1.0]]
