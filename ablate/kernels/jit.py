"""``kernel``: njit with the project's flags and an on-disk cache that works for closures.

Kernels are built by factories that close over compile-time flags (the cell variant, the
precision). Numba's own cache hashes a closure's cell contents with pickle, and a pickled
dispatcher differs from process to process, so closures over other kernels never hit the
cache. Here the key is instead (a hash of every source file of the package, the
closure's constants with kernels named by qualified name): stable across processes, and
any edit to the package invalidates every cached kernel, dependencies included.

Set NUMBA_CACHE_DIR to keep the cache outside the source tree.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from numba import njit
from numba.core.caching import FunctionCache
from numba.core.dispatcher import Dispatcher

# error_model="numpy": no Python zero-division checks, which would block vectorisation.
# nogil: kernels run on plain Python threads in parallel (batch chunks, ensembles).
FLAGS = {"error_model": "numpy", "nogil": True}


def _package_hash() -> str:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


_PACKAGE_HASH = _package_hash()


def _describe(value) -> str:
    if isinstance(value, Dispatcher):
        return f"kernel:{value.py_func.__module__}.{value.py_func.__qualname__}" + _closure_key(
            value.py_func
        )
    return f"{type(value).__name__}:{value!r}"


def _closure_key(py_func) -> str:
    if py_func.__closure__ is None:
        return "()"
    return "(" + ",".join(_describe(cell.cell_contents) for cell in py_func.__closure__) + ")"


class _StableCache(FunctionCache):
    def _index_key(self, sig, codegen):
        closure = hashlib.sha256(_closure_key(self._py_func).encode()).hexdigest()
        return (sig, codegen.magic_tuple(), (_PACKAGE_HASH, closure))


def kernel(fn=None, **options):
    """Compile ``fn`` with njit (project flags plus ``options``) and the stable disk cache."""

    def wrap(py_func):
        dispatcher = njit(**{**FLAGS, **options})(py_func)
        dispatcher._cache = _StableCache(py_func)
        return dispatcher

    return wrap(fn) if fn is not None else wrap


def inline(fn):
    """A small helper inlined into its callers at the Numba IR level (activations)."""
    return njit(inline="always", **FLAGS)(fn)
