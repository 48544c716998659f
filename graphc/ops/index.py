"""Index rules of movement ops, written once and read three ways.

A movement op (reshape, transpose, broadcast_to, slice, unslice,
concatenate) computes nothing: each element of its output *is* an element of
one of its inputs, or zero. Its OpDef says which, once, as an index map::

    index_map(ix, node, idx) -> [Read(input, at, when), ...]

``idx`` is the output index (one value per output axis) and ``ix`` an
abstract index builder: the rule may only combine index values with the
operations below, so that each interpreter can give them its own meaning.

**The result.** A list of :class:`Read`: the output element at ``idx`` is
input ``input`` at index ``at`` for the first read whose condition ``when``
holds (``None``: always), and zero when none does (an empty list: always
zero). A single-input map is ``[Read(0, src)]``; concatenate lists one read
per non-empty input (``when``: the index lies in that input's range),
unslice one read whose ``when`` is "this element was selected". Every
``at`` must be inside its input for *every* output index, also where its
``when`` is false (the LLVM interpreter reads all of them and selects):
rules keep those reads in bounds with ``clamp``. An op that is not a pure
index map but reads its input at a computed index (``one_hot``) declares
that read as its ``index_map`` and computes its value in ``lower_at``.

**The algebra** (ints may stand for constants anywhere):

=============================  =============================================
``const(k)``                   the constant ``k``
``add(a, b)``, ``sub(a, b)``   sum, difference
``mul(a, b)``                  product; one of ``a``, ``b`` a constant
``floordiv(a, k)``, ``mod(a, k)``  by a positive constant ``k``; ``a >= 0``
                               wherever the result is used
``eq``, ``lt``, ``ge`` (a, b)  comparisons (conditions)
``and_(c, d)``                 both conditions
``select(c, a, b)``            ``a`` where ``c`` holds, else ``b``
``clamp(v, lo, hi)``           ``v`` kept inside ``[lo, hi]`` (int bounds).
                               Only to keep a read that is selected away in
                               bounds: where the read's ``when`` holds ``v``
                               is inside already, so the affine interpreters
                               read ``clamp(v, ...)`` as ``v``
``linearize(idx, shape)``      the row-major offset of ``idx`` in ``shape``
``delinearize(lin, shape)``    the index of ``shape`` at row-major offset
                               ``lin``
=============================  =============================================

**The interpreters.**

* *LLVM* (``backend/llvm/loops.py``: ``IndexBuilder`` is the algebra on i64
  values, ``kernel.lower_index_map`` emits the reads and the selects): movement
  ops fold into the index arithmetic of the loop that reads them.
* *Symbolic* (:class:`Symbolic`, :func:`symbolic_reads`): index values are
  ints, opaque symbols (``("i", k)``, any hashable non-int), affine forms
  over them (:class:`Lin`) or ``None`` (unknown); conditions are bools when
  their operands are ints, else :data:`MAYBE` (never ``None``, which in a
  Read means "always"). Fusion and the memory planner ask it at which
  index a kernel reads a value (``backend.plan.input_indices``).
* *Strided* (:func:`strided_view`): index values are affine forms of the
  output index; a chain of views of a buffer becomes ``(buffer, offset,
  strides)``, read in place by the GEMM. Anything not affine (a condition,
  a division of a variable) means "not a view"; ``delinearize`` yields
  digit symbols that are folded back into their offset when the strides
  they are read with are contiguous (a reshape merging contiguous axes).

Adding a movement op is adding its rule: ``tests/test_index_rules.py``
checks every op that declares one against numpy under all three.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import registry


class Read(NamedTuple):
    """One read of an index map: input ``input`` at index ``at`` (one value
    per input axis) when ``when`` holds (``None``: always)."""
    input: int
    at: list
    when: object = None


def is_movement(d) -> bool:
    """Is the op of OpDef ``d`` a movement op: its value is the value its
    index rule reads (or zero where no read applies)? One_hot declares its
    read but computes its value (``lower_at``). ``OpDef.view`` is the stricter
    fact: every element is an input element (unslice, which fills zeros, is a
    movement op but not a view)."""
    return d.index_map is not None and d.lower_at is None


def broadcast_index(idx, out_shape, in_shape, ix):
    """The index into an input of shape ``in_shape`` broadcast (numpy-style)
    to ``out_shape``: the one rule of broadcasting, for elementwise inputs
    and ``broadcast_to`` alike."""
    lead = len(out_shape) - len(in_shape)
    return [ix.const(0) if in_shape[k] == 1 else idx[lead + k] for k in range(len(in_shape))]


def all_of(ix, conds):
    """The conjunction of ``conds`` (``None`` when there are none: always)."""
    out = None
    for c in conds:
        out = c if out is None else ix.and_(out, c)
    return out


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def row_strides(shape) -> list:
    out, acc = [0] * len(shape), 1
    for k in range(len(shape) - 1, -1, -1):
        out[k] = acc
        acc *= shape[k]
    return out


# ------------------------------------------------------------------ affine forms

@dataclass(frozen=True)
class Lin:
    """``const + sum(coef * symbol)``, with ``terms`` sorted and non-zero;
    built only by :func:`_join`, so equal forms compare equal."""
    const: int
    terms: tuple


def _split(v):
    """``(const, {symbol: coef})`` of an index value (None: unknown)."""
    if v is None:
        return None
    if _is_int(v):
        return int(v), {}
    if isinstance(v, Lin):
        return v.const, dict(v.terms)
    return 0, {v: 1}


def _join(c: int, terms: dict):
    """The canonical index value of ``c + sum(terms)``: an int, a bare symbol
    (coefficient 1, no constant) or a :class:`Lin`."""
    terms = {s: k for s, k in terms.items() if k}
    if not terms:
        return c
    if c == 0 and len(terms) == 1:
        ((s, k),) = terms.items()
        if k == 1:
            return s
    return Lin(c, tuple(sorted(terms.items(), key=repr)))


class _Maybe:
    def __repr__(self):
        return "MAYBE"


MAYBE = _Maybe()    # a condition the symbolic interpreter cannot decide


class Symbolic:
    """The algebra on ints, symbols and affine forms; anything else is
    :meth:`unknown` (``None`` here); undecided conditions are :data:`MAYBE`."""

    def unknown(self):
        return None

    def const(self, k):
        return int(k)

    def _comb(self, a, b, sign):
        x, y = _split(a), _split(b)
        if x is None or y is None:
            return self.unknown()
        t = dict(x[1])
        for s, k in y[1].items():
            t[s] = t.get(s, 0) + sign * k
        return _join(x[0] + sign * y[0], t)

    def add(self, a, b):
        return self._comb(a, b, 1)

    def sub(self, a, b):
        return self._comb(a, b, -1)

    def mul(self, a, b):
        if not _is_int(b):
            a, b = b, a
        x = _split(a)
        if not _is_int(b) or x is None:
            return self.unknown()
        k = int(b)
        return _join(x[0] * k, {s: c * k for s, c in x[1].items()})

    def floordiv(self, a, k):
        if k == 1:
            return a
        return int(a) // k if _is_int(a) else self.unknown()

    def mod(self, a, k):
        if k == 1:
            return 0
        return int(a) % k if _is_int(a) else self.unknown()

    def _cmp(self, a, b, op):
        if _is_int(a) and _is_int(b):
            return op(int(a), int(b))
        return MAYBE

    def eq(self, a, b):
        return self._cmp(a, b, int.__eq__)

    def lt(self, a, b):
        return self._cmp(a, b, int.__lt__)

    def ge(self, a, b):
        return self._cmp(a, b, int.__ge__)

    def and_(self, c, d):
        if c is False or d is False:
            return False
        if c is True:
            return d
        return c if d is True else MAYBE

    def select(self, c, a, b):
        if c is True or (a == b and a is not None):
            return a
        return b if c is False else self.unknown()

    def clamp(self, v, lo, hi):
        return min(max(int(v), lo), hi) if _is_int(v) else v

    def linearize(self, idx, shape):
        lin = 0
        for i, n in zip(idx, shape):
            if n != 1:           # an in-bounds index on an axis of extent 1 is 0
                lin = self.add(self.mul(lin, n), i)
        return lin

    def delinearize(self, lin, shape):
        parts = [0] * len(shape)
        nonunit = [k for k, n in enumerate(shape) if n != 1]
        for pos, k in enumerate(reversed(nonunit)):
            if pos == len(nonunit) - 1:
                parts[k] = lin
            else:
                parts[k] = self.mod(lin, shape[k])
                lin = self.floordiv(lin, shape[k])
        return parts


SYMBOLIC = Symbolic()


def symbolic_reads(n, idx, fresh) -> list:
    """``[(input node, index tuple), ...]``: where computing ``n`` at the
    symbolic index ``idx`` reads its inputs (``None`` entries: unknown). A
    reduction reads along its reduced axes at new symbols ``("r", k)``
    (``fresh[0]`` counts them); elementwise ops read at the broadcast index;
    an op with an index map where it says (reads whose condition is known
    to be false are left out); anything else is unknown."""
    d = registry.get(n.op)
    if d.kind == "elementwise":
        return [(i, tuple(broadcast_index(idx, n.shape, i.shape, SYMBOLIC))) for i in n.inputs]
    if d.index_map is not None:
        out = []
        for r in d.index_map(SYMBOLIC, n, list(idx)):
            if r.when is False:
                continue
            out.append((n.inputs[r.input], tuple(r.at)))
            if r.when is None or r.when is True:
                break            # the reads after it are never used
        return out
    if d.kind == "reduce":
        axes, keep = n.attrs["axes"], n.attrs["keepdims"]
        x = n.inputs[0]
        out, k = [], 0
        for a in range(x.ndim):
            if a in axes:
                fresh[0] += 1
                out.append(("r", fresh[0]))
                k += keep
            else:
                out.append(idx[k])
                k += 1
        return [(x, tuple(out))]
    return [(i, (None,) * i.ndim) for i in n.inputs]


# ------------------------------------------------------------------ strided views

class NotAView(Exception):
    """The strided interpreter met something that is not affine."""


@dataclass(frozen=True)
class _Digit:
    """Digit ``k`` of the row-major split of delinearize group ``group``."""
    group: int
    k: int


class _Strided(Symbolic):
    """The algebra on affine forms of the output index (symbols ``("x", j)``)
    and digit symbols of delinearized offsets; anything else raises."""

    def __init__(self):
        self.groups = []          # (lin, shape) per delinearize call

    def unknown(self):
        raise NotAView

    def eq(self, a, b):
        raise NotAView

    lt = ge = eq

    def and_(self, c, d):
        raise NotAView

    def select(self, c, a, b):
        raise NotAView

    def linearize(self, idx, shape):
        lin = 0
        for i, n in zip(idx, shape):
            lin = self.add(self.mul(lin, n), i)
        return lin

    def delinearize(self, lin, shape):
        nonunit = [k for k, n in enumerate(shape) if n != 1]
        parts = [0] * len(shape)
        if len(nonunit) == 1:
            parts[nonunit[0]] = lin
        elif nonunit:
            g = len(self.groups)
            self.groups.append((lin, tuple(shape)))
            for k in nonunit:
                parts[k] = _Digit(g, k)
        return parts

    def fold(self, address, ndim: int):
        """``(offset, strides)`` of an affine address: the digits of each
        delinearized offset ``lin`` must be weighted ``w * row_strides``
        (then they are ``w * lin``), else it is not a view."""
        for g in range(len(self.groups) - 1, -1, -1):      # later groups may hold earlier digits
            lin, shape = self.groups[g]
            c, terms = _split(address)
            rs = row_strides(shape)
            nonunit = [k for k, n in enumerate(shape) if n != 1]
            w = {k: terms.pop(_Digit(g, k), 0) for k in nonunit}
            base = w[nonunit[-1]]
            if any(w[k] != base * rs[k] for k in nonunit):
                raise NotAView
            address = self.add(_join(c, terms), self.mul(lin, base))
        c, terms = _split(address)
        strides = tuple(terms.pop(("x", j), 0) for j in range(ndim))
        if terms:
            raise NotAView
        return c, strides


class View(NamedTuple):
    """Element ``idx`` of a value is ``buffer[offset + sum(idx * strides)]``
    (in elements)."""
    buffer: object
    offset: int
    strides: tuple


def strided_view(x, inside, is_buffer) -> View | None:
    """``x`` as a strided view of a buffer, or ``None``. ``inside(node)``:
    is the node computed in place (a chain of view ops is followed through
    such nodes); ``is_buffer(node)``: does a node that is not inside have a
    buffer. The index maps of the chain are composed, outermost first, and
    the address they give must be affine in ``x``'s index."""
    ix = _Strided()
    idx = [("x", j) for j in range(x.ndim)]
    node = x
    try:
        while inside(node):
            d = registry.get(node.op)
            if not is_movement(d):
                return None
            reads = d.index_map(ix, node, idx)
            if len(reads) != 1 or reads[0].when is not None:
                return None
            node, idx = node.inputs[reads[0].input], list(reads[0].at)
        if not is_buffer(node):
            return None
        if x.size == 0:
            return View(node, 0, (0,) * x.ndim)
        offset, strides = ix.fold(ix.linearize(idx, node.shape), x.ndim)
    except NotAView:
        return None
    return View(node, offset, strides)


MAX_ROW_TABLE = 1 << 16       # rows of a row-table view (its table is a constant of the code)


def row_table_view(x, inside, is_buffer):
    """A 2-D ``x`` (K, N) that is a ``reshape`` merging the leading axes of a
    strided view ``v`` (k1, .., kr, N) with unit column stride, as
    ``(buffer, offset, rows)``: ``x[k, j] = buffer[offset + rows[k] + j]``,
    ``rows`` a tuple of K element offsets. The leading axes' strides need
    not merge into one (that is what ``strided_view`` needs): a
    convolution's im2col, rows (c, kh, kw) at ``c * plane + kh * W + kw``, is
    such a view of the padded input, read by the GEMM through the table."""
    if x.ndim != 2 or not inside(x) or x.op != "reshape" or x.size == 0:
        return None
    v = x.inputs[0]
    if v.ndim < 2 or v.shape[-1] != x.shape[1] or x.shape[0] > MAX_ROW_TABLE:
        return None
    view = strided_view(v, inside, is_buffer)
    if view is None or view.strides[-1] != 1:
        return None
    rows = np.zeros(1, np.int64)
    for extent, stride in zip(v.shape[:-1], view.strides[:-1]):
        rows = (rows[:, None] + np.arange(extent, dtype=np.int64) * stride).reshape(-1)
    return view.buffer, view.offset, tuple(int(r) for r in rows)
