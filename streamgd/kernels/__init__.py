"""Compiled loops (Numba): loss, gradient and optimizer step of whole chunks; arrays in, arrays out."""
