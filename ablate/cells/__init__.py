"""The cell zoo: every registered cell by name, its description and its compiled kernels.

>>> from ablate import cells
>>> cells.names()[:3]
['lstm', 'lstm_peephole', 'nig']
>>> cells.get("gru").gates
('r', 'z', 'n')
"""

from __future__ import annotations

import difflib

import numpy as np

from ablate.cells.spec import SPECS, Cell

__all__ = ["Cell", "names", "get", "kernels", "drivers"]

_REGISTRY: dict[str, Cell] = {cell.name: cell for cell in SPECS}
_KERNELS: dict = {}
_DRIVERS: dict = {}


def names() -> list[str]:
    """All registered cell names, LSTM family first."""
    return list(_REGISTRY)


def get(name: str) -> Cell:
    """The cell called ``name``; an unknown name raises ValueError listing the known ones."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(str(name), _REGISTRY, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown cell {name!r}{hint}; known cells: {', '.join(_REGISTRY)}")


def kernels(name: str, dtype) -> tuple:
    """(views, forward, backward) kernels of a cell for float32 or float64 (built once)."""
    get(name)
    key = (name, np.dtype(dtype).name)
    if key not in _KERNELS:
        from ablate.cells import lstm_family, simple_family

        family = lstm_family if name in lstm_family.VARIANTS else simple_family
        _KERNELS[key] = family.make_kernels(family.VARIANTS[name], np.dtype(dtype))
    return _KERNELS[key]


def drivers(name: str, dtype) -> tuple:
    """(chunk_loss_grad, chunk_predict) kernels of a cell for float32 or float64."""
    key = (name, np.dtype(dtype).name)
    if key not in _DRIVERS:
        from ablate.kernels.driver import make_drivers

        _, forward, backward = kernels(name, dtype)
        _DRIVERS[key] = make_drivers(forward, backward)
    return _DRIVERS[key]
