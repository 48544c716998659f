"""Backends: the numpy interpreter (the oracle) and the LLVM JIT."""
