"""``kernel``: njit with the project's flags and an on-disk cache that works for closures.

Kernels are built by factories that close over compile-time flags (the cell variant, the
precision). Numba's own cache hashes a closure's cell contents with pickle, and a pickled
dispatcher differs from process to process, so closures over other kernels never hit the
cache. Here the key is instead (a hash of every compiled-code source file of the package, the
closure's constants with kernels named by qualified name): stable across processes, and
any edit to the package invalidates every cached kernel, dependencies included.

Set NUMBA_CACHE_DIR to keep the cache outside the source tree.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from numba import njit
from numba.core.caching import FunctionCache, IndexDataCacheFile
from numba.core.dispatcher import Dispatcher

# error_model="numpy": no Python zero-division checks, which would block vectorisation.
# nogil: kernels run on plain Python threads in parallel (batch chunks, ensembles).
FLAGS = {"error_model": "numpy", "nogil": True}
# The cells' time loops: a·b + c may become one fused multiply-add (LLVM's "contract",
# nothing looser: no reassociation, no reciprocal tricks). The float32 tanh and σ are
# polynomials in Horner form, so their multiply-add pairs fuse: the lstm forward's
# pointwise vector ops drop from 129 to 77 (one rounding per FMA instead of two).
CELL_LOOPS = {"fastmath": {"contract"}}


_COMPILED_DIRS = ("cells", "kernels", "tasks")  # every file here may hold or feed a kernel
_COMPILED_MARK = re.compile(rb"@kernel|@inline|njit|numba\.cuda")


def _package_hash() -> str:
    """A hash of the package's compiled-code sources: the cells, kernels and tasks folders
    and any other module that defines a kernel. The runner, the ledger and the reports are
    left out, so editing them does not throw away every compiled kernel."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        text = path.read_bytes()
        if relative.parts[0] not in _COMPILED_DIRS and not _COMPILED_MARK.search(text):
            continue
        digest.update(str(relative).encode())
        digest.update(text)
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


class _KeyNamedFiles(IndexDataCacheFile):
    """One data file per key, named by the key's hash; no shared index.

    Numba numbers data files through an index that every process rewrites; two processes
    compiling different variants of one factory kernel at once (pytest -n 2) can pick the
    same number and each load the other's machine code. A file named by its key cannot
    be mistaken for another, and a process writing the same key writes the same content.
    """

    def _name_for(self, key) -> str:
        digest = hashlib.sha256(str(key).encode()).hexdigest()[:24]
        return self._data_name_pattern.replace("{number:d}", digest)

    def save(self, key, data):
        self._save_data(self._name_for(key), (str(key), data))

    def load(self, key):
        try:
            stored_key, data = self._load_data(self._name_for(key))
        except Exception:  # absent, or unreadable: compile afresh
            return None
        return data if stored_key == str(key) else None


class _StableCache(FunctionCache):
    def __init__(self, py_func):
        super().__init__(py_func)
        self._cache_file = _KeyNamedFiles(
            cache_path=self._cache_path,
            filename_base=self._impl.filename_base,
            source_stamp=self._impl.locator.get_source_stamp(),
        )

    def _index_key(self, sig, codegen):
        closure = hashlib.sha256(_closure_key(self._py_func).encode()).hexdigest()
        return (sig, codegen.magic_tuple(), (_PACKAGE_HASH, closure))


def kernel(fn=None, **options):
    """Compile ``fn`` with njit (project flags plus ``options``) and the stable disk cache."""

    def wrap(py_func):
        if py_func.__closure__ is not None:
            # Numba names compiled symbols by qualified name plus a per-process counter, so
            # two variants of one factory kernel compiled in different processes can share
            # a symbol name, and a caller linking both from the cache gets the wrong one.
            # The closure's constants in the name keep every variant's symbols distinct.
            tag = hashlib.sha256(_closure_key(py_func).encode()).hexdigest()[:12]
            py_func.__qualname__ = f"{py_func.__qualname__}_{tag}"
        dispatcher = njit(**{**FLAGS, **options})(py_func)
        dispatcher._cache = _StableCache(py_func)
        return dispatcher

    return wrap(fn) if fn is not None else wrap


def inline(fn):
    """A small helper inlined into its callers at the Numba IR level (activations)."""
    return njit(inline="always", **FLAGS)(fn)
