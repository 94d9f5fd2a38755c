"""Compiled building blocks shared by every cell: activations, readout and loss, Adam."""
