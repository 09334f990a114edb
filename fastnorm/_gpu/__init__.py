"""CUDA path: kernels.cu (package data), _names (instantiations), _backend (CuPy).

This package imports nothing optional; fastnorm._gpu._backend imports CuPy and is
loaded only when a CuPy array arrives."""
