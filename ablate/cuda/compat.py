"""Keep numba-cuda compiling under a NumPy newer than it knows.

numba-cuda 0.30.4 registers an overload of ``np.row_stack`` when its typing registries load,
at the first kernel compile. NumPy 2.5 removed ``row_stack`` (an alias of ``np.vstack``,
deprecated since 2.0), so that registration raises AttributeError and no kernel compiles:
seen on the lent H200's image (numba 0.68.0, numba-cuda 0.30.4, numpy 2.5.2, 2026-12-04).
Restoring the alias where it is missing changes nothing else: it is the function NumPy
itself used to export under that name.
"""

from __future__ import annotations

import warnings
from types import ModuleType

# Removed from NumPy, still registered by numba-cuda: alias -> the function it named.
REMOVED_ALIASES = {"row_stack": "vstack"}


def restore_numpy_aliases(numpy: ModuleType | None = None) -> list[str]:
    """Give ``numpy`` (default: the imported one) the removed aliases numba-cuda still
    registers; the names it had to add."""
    if numpy is None:
        import numpy
    added = []
    for alias, target in REMOVED_ALIASES.items():
        if not _has(numpy, alias):
            setattr(numpy, alias, getattr(numpy, target))
            added.append(alias)
    return added


def _has(module: ModuleType, name: str) -> bool:
    """hasattr without NumPy's deprecation warning for an alias it still has."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hasattr(module, name)
