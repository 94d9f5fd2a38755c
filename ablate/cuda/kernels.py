"""The CUDA kernels of every registered cell, by name and precision (built once)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ablate import cells


class CudaCell(NamedTuple):
    forward: object  # forward[grid, block](params, transposed, x, target_class, target_value,
    #                   mask, scale, limit, s, loss_code, n_hidden, n_out, tile_rows, work,
    #                   loss_rows, parts, sync); x and the targets [M or 1, S, …]: one for
    #                   all models; parts, sync: ablate.cuda.tiles
    backward: object  # backward[grid, block](params, x, mask, limit, s, n_hidden, n_out,
    #                    tile_rows, work, grad_tiles, parts, sync)
    work_size: object  # work_size(T, B, H, O) -> elements of one model's work vector
    output_offset: object  # output_offset(T, B, H, O) -> where y [T,B,O] starts in it


_KERNELS: dict = {}


def kernels(cell: str, dtype, rows_per_thread: int = 1, resident=None,
            spread: bool = False, clusters: bool = False) -> CudaCell:
    """The forward and backward CUDA kernels of ``cell`` for float32 or float64, a thread
    taking one unit of ``rows_per_thread`` batch rows at once; with a ``resident`` layout
    (``ablate.cuda.device.resident_layout``) R stays in registers; ``spread``: for a batch
    tile over several blocks (``ablate.cuda.tiles``; the others run at parts 1 only);
    ``clusters``: spread kernels whose blocks are a thread-block cluster (sm_90,
    ``ablate.cuda.cluster``)."""
    cells.get(cell)  # an unknown name raises with the known ones
    dtype = np.dtype(dtype)
    key = (cell, dtype.name, rows_per_thread, resident, spread, clusters)
    if key not in _KERNELS:
        from ablate.cuda import lstm_family

        if cell in lstm_family.VARIANTS:
            family = lstm_family
        else:
            from ablate.cuda import simple_family as family
        variant = family.VARIANTS[cell]
        forward, backward = family.make_kernels(variant, dtype, rows_per_thread, resident,
                                                spread, clusters)

        def size(T, B, H, O, variant=variant, family=family):
            return family.work_size(variant, T, B, H, O)

        def outputs(T, B, H, O, variant=variant, family=family):
            return family.output_offset(variant, T, B, H, O)

        _KERNELS[key] = CudaCell(forward, backward, size, outputs)
    return _KERNELS[key]
