"""Lowering of a planned graph to LLVM IR and its JIT compilation."""
