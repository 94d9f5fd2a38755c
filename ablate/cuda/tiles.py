"""Which batch rows a block of a cell kernel owns (grid = (batch tiles, models))."""

from numba import cuda


@cuda.jit(device=True)
def block_rows(x, tile_rows):
    """(T, B, I, row0, rows, tid, n_threads) of this block for x [M,S,T,B,I]: the block owns
    rows row0 … row0 + rows − 1 (the last tile may be short); its threads are tid of
    n_threads, and take the elements e = tid, tid + n_threads, …"""
    T, B, n_in = x.shape[2], x.shape[3], x.shape[4]
    row0 = cuda.blockIdx.x * tile_rows
    return T, B, n_in, row0, min(tile_rows, B - row0), cuda.threadIdx.x, cuda.blockDim.x
