"""``einsum``: numpy's Einstein summation (ONNX ``Einsum``), a composite.

The equation is parsed once (subscripts, ``...`` for broadcast dimensions,
implicit output when there is no ``->``); then every operand takes its
diagonals (a repeated subscript: the two axes moved last, merged, and read
with a stride of ``n + 1``) and sums out the subscripts no one else uses, and
the operands are contracted left to right, two at a time: subscripts both
share and need later are batch dimensions, the shared ones no one needs later
are contracted by one batched ``matmul`` (both operands transposed and
reshaped to ``(batch, M, K)`` and ``(batch, K, N)``), and a pair with nothing
to contract is a broadcast product. A last transpose gives the output order.
So einsum differentiates, and its GEMMs run as graphc's matmul does."""
from __future__ import annotations

import math

from ..errors import DTypeError, ShapeError
from ..ir import dtypes as D
from ..ir.node import Node
from .common import as_node
from .elementwise import cast, promote
from .linalg import matmul
from .movement import broadcast_to, getitem, reshape, transpose
from .reduce import sum as _sum


def _err(eq, msg):
    return ShapeError(f"einsum: equation {eq!r}: {msg}")


def _term(eq, term, ndim, where):
    """(letters before '...', letters after, has '...') of one term."""
    if term.count("...") > 1:
        raise _err(eq, f"{where} {term!r} has more than one '...'")
    before, ell, after = term.partition("...")
    for c in before + after:
        if not (c.isascii() and c.isalpha()):
            raise _err(eq, f"{where} {term!r}: {c!r} is not a subscript (letters a-z, A-Z, "
                           "and one '...')")
    if ndim is not None:
        n = len(before) + len(after)
        if (n != ndim) if not ell else (n > ndim):
            raise _err(eq, f"{where} {term!r} has {n} subscript(s){' and ...' if ell else ''} "
                           f"for an operand of rank {ndim}")
    return before, after, bool(ell)


def parse(equation: str, shapes) -> tuple[list, list, dict]:
    """(labels of each operand, output labels, size of each label); a label is a
    letter or ``("...", k)``, the k-th broadcast dimension (right-aligned)."""
    if not isinstance(equation, str):
        raise ShapeError(f"einsum: the equation must be a str, got {type(equation).__name__}")
    eq = "".join(equation.split())
    if eq.count("->") > 1:
        raise _err(equation, "more than one '->'")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise _err(equation, f"{len(terms)} input term(s) for {len(shapes)} operand(s)")
    parsed = [_term(equation, t, len(s), f"term {k}") for k, (t, s) in enumerate(zip(terms, shapes))]
    n_ell = max([len(s) - len(b) - len(a) for (b, a, e), s in zip(parsed, shapes) if e],
                default=0)
    labels, sizes = [], {}
    for k, ((before, after, _), shape) in enumerate(zip(parsed, shapes)):
        m = len(shape) - len(before) - len(after)
        ls = list(before) + [("...", n_ell - m + j) for j in range(m)] + list(after)
        for lab, d in zip(ls, shape):
            old = sizes.get(lab)
            if isinstance(lab, tuple):          # broadcast dimensions: 1 stretches
                if old is not None and old != d and 1 not in (old, d):
                    raise _err(equation, f"the '...' dimensions of operand {k} {tuple(shape)} "
                                         "do not broadcast with the others")
                sizes[lab] = d if old in (None, 1) else old
            elif old is not None and old != d:
                raise _err(equation, f"subscript {lab!r} is {old} and {d} (operand {k}, shape "
                                     f"{tuple(shape)})")
            else:
                sizes[lab] = d
        labels.append(ls)
    ell = [("...", j) for j in range(n_ell)]
    if arrow:
        before, after, has = _term(equation, rhs, None, "the output")
        out = list(before) + (ell if has else []) + list(after)
        letters = before + after
        dup = sorted({c for c in letters if letters.count(c) > 1})
        if dup:
            raise _err(equation, f"output subscript(s) {dup} repeated")
        unknown = sorted({c for c in letters if c not in sizes})
        if unknown:
            raise _err(equation, f"output subscript(s) {unknown} are in no input")
    else:                                       # implicit: the letters used once, sorted
        flat = [lab for ls in labels for lab in ls if isinstance(lab, str)]
        out = ell + sorted(c for c in set(flat) if flat.count(c) == 1)
    return labels, out, sizes


def _diagonals(x, ls):
    """Take the diagonal of every repeated label: (node, labels without repeats)."""
    while True:
        rep = next((lab for lab in ls if ls.count(lab) > 1), None)
        if rep is None:
            return x, ls
        p = ls.index(rep)
        q = ls.index(rep, p + 1)
        rest = [k for k in range(len(ls)) if k not in (p, q)]
        n = x.shape[p]
        x = transpose(x, rest + [p, q])
        x = reshape(x, tuple(x.shape[:-2]) + (n * n,))
        x = getitem(x, (Ellipsis, slice(None, None, n + 1)))
        ls = [ls[k] for k in rest] + [rep]


def _sum_out(x, ls, keep):
    axes = tuple(k for k, lab in enumerate(ls) if lab not in keep)
    if not axes:
        return x, ls
    dt = x.dtype
    return cast(_sum(x, axis=axes), dt), [lab for lab in ls if lab in keep]


def _contract(a, la, b, lb, keep, sizes):
    """The product of two labelled operands, summed over the labels they share
    that are not in ``keep``."""
    batch = [lab for lab in la if lab in lb and lab in keep]
    con = [lab for lab in la if lab in lb and lab not in keep]
    a_only = [lab for lab in la if lab not in lb]
    b_only = [lab for lab in lb if lab not in la]
    bs = tuple(sizes[lab] for lab in batch)
    ms, ns = tuple(sizes[lab] for lab in a_only), tuple(sizes[lab] for lab in b_only)
    if not con:                                 # a broadcast product
        a = reshape(transpose(a, [la.index(lab) for lab in batch + a_only]),
                    bs + ms + (1,) * len(b_only))
        b = reshape(transpose(b, [lb.index(lab) for lab in batch + b_only]),
                    bs + (1,) * len(a_only) + ns)
        return a * b, batch + a_only + b_only
    ks = tuple(sizes[lab] for lab in con)
    m, k, n = math.prod(ms), math.prod(ks), math.prod(ns)
    a = reshape(transpose(a, [la.index(lab) for lab in batch + a_only + con]), bs + (m, k))
    b = reshape(transpose(b, [lb.index(lab) for lab in batch + con + b_only]), bs + (k, n))
    return reshape(matmul(a, b), bs + ms + ns), batch + a_only + b_only


def einsum(equation: str, *operands) -> Node:
    """numpy's ``einsum(equation, *operands)``: subscripts are letters, ``...``
    stands for broadcast dimensions, ``->`` gives the output (without it: the
    letters used once, sorted, after the ``...`` dimensions). A repeated
    subscript in one term takes a diagonal; subscripts missing from the output
    are summed. The result has the operands' (promoted) dtype; bool is refused.
    Errors (a ``ShapeError`` naming the equation): a term count that differs
    from the operands', a character that is not a letter, a term whose
    subscripts do not match its operand's rank, a subscript with two sizes,
    an output subscript repeated or in no input."""
    if not operands:
        raise ShapeError("einsum: needs at least one operand")
    xs = [as_node(x, opname="einsum") for x in operands]
    xs = promote("einsum", *xs) if len(xs) > 1 else xs
    if D.is_bool(xs[0].dtype):
        raise DTypeError("einsum: bool operands; cast them to a number first")
    labels, out, sizes = parse(equation, [x.shape for x in xs])
    ops = []
    for k, (x, ls) in enumerate(zip(xs, labels)):
        x, ls = _diagonals(x, ls)
        target = tuple(sizes[lab] for lab in ls)
        if target != x.shape:                   # '...' dimensions of size 1 stretched
            x = broadcast_to(x, target)
        others = {lab for j, l2 in enumerate(labels) if j != k for lab in l2}
        ops.append(_sum_out(x, ls, others | set(out)))
    x, ls = ops[0]
    for j in range(1, len(ops)):
        keep = set(out) | {lab for _, l2 in ops[j + 1:] for lab in l2}
        x, ls = _contract(x, ls, *ops[j], keep, sizes)
    x, ls = _sum_out(x, ls, set(out))
    return transpose(x, [ls.index(lab) for lab in out])


__all__ = ["einsum"]
