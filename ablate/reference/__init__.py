"""Independent references the compiled kernels are checked against.

``torch_cells`` writes every cell of ``ablate.cells.spec.SPECS`` as a plain PyTorch eager
loop over time, from the equations in ``spec.py`` alone, so autograd gives the gradients.
"""
