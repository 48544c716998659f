"""Helpers for emitting the runtime library's code (rtlib.py, pool.py)."""
from __future__ import annotations

from llvmlite import ir

VOID = ir.VoidType()


def _decl(m: ir.Module, name: str, ret, args, var_arg=False) -> ir.Function:
    f = m.globals.get(name)
    if f is None:
        f = ir.Function(m, ir.FunctionType(ret, args, var_arg=var_arg), name)
    return f


class _FnPtr:
    """A function pointer value presented to llvmlite's call instruction with
    the function type it has (opaque pointers carry none)."""

    def __init__(self, value, fnty):
        self.value, self.function_type, self.type = value, fnty, value.type

    def get_reference(self):
        return self.value.get_reference()


def indirect_call(b: ir.IRBuilder, ftype: ir.FunctionType, fptr, args):
    """Call through a function pointer."""
    return b.call(_FnPtr(fptr, ftype), args)
