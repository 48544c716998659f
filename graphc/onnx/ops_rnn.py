"""Converters of ONNX's recurrent layers RNN, GRU and LSTM, unrolled over
the (static) sequence length.

The input projection of every time step is one matmul (``X @ W^T + Wb`` for
the whole sequence); each step then adds ``H @ R^T`` and applies the gates,
so a sequence of length T is T small matmuls and T fused elementwise
kernels, differentiable like any graphc graph. Directions ``forward``,
``reverse`` and ``bidirectional``, both layouts, ``clip``, the activation
attributes, LSTM peepholes and ``sequence_lens`` (a graph value: steps past a
batch entry's length keep its state and output zeros; the reverse direction
reverses each entry within its length) are supported; LSTM's
``input_forget`` is not."""
from __future__ import annotations

import numpy as np

from .. import ops as O
from .convert import op
from .ops_select import reverse_sequence


def _affine(a, b):
    return lambda x: x * a + b


# name -> (number of alpha/beta parameters it takes, defaults, builder)
_ACTS = {
    "Tanh": (0, (), lambda: O.tanh), "Sigmoid": (0, (), lambda: O.sigmoid),
    "Relu": (0, (), lambda: O.relu),
    "Softsign": (0, (), lambda: lambda x: x / (O.abs(x) + 1.0)),
    "Softplus": (0, (), lambda: lambda x: O.log1p(O.exp(-O.abs(x))) + O.relu(x)),
    "Affine": (2, (1.0, 0.0), _affine),
    "LeakyRelu": (1, (0.01,), lambda a: lambda x: O.where(x >= 0, x, x * a)),
    "ThresholdedRelu": (1, (1.0,), lambda a: lambda x: O.where(x > a, x, x * 0.0)),
    "ScaledTanh": (2, (1.0, 1.0), lambda a, b: lambda x: O.tanh(x * b) * a),
    "HardSigmoid": (2, (0.2, 0.5), lambda a, b: lambda x: O.clip(x * a + b, 0.0, 1.0)),
    "Elu": (1, (1.0,), lambda a: lambda x: O.where(x >= 0, x, (O.exp(O.minimum(x, 0.0)) - 1.0) * a)),
}


def _activations(n, defaults, ndir):
    names = n.attr("activations")
    names = [v.decode() if isinstance(v, bytes) else v for v in names] if names \
        else list(defaults) * ndir
    if len(names) != len(defaults) * ndir:
        raise n.error(f"activations lists {len(names)} functions, {n.op} with {ndir} "
                      f"direction(s) takes {len(defaults) * ndir}")
    alphas = list(n.attr("activation_alpha", []))
    betas = list(n.attr("activation_beta", []))
    fns = []
    for name in names:
        key = next((k for k in _ACTS if k.lower() == name.lower()), None)
        if key is None:
            raise n.error(f"activation {name!r} is not supported (one of {sorted(_ACTS)})")
        k, dflt, build = _ACTS[key]
        args = []
        if k >= 1:
            args.append(alphas.pop(0) if alphas else dflt[0])
        if k >= 2:
            args.append(betas.pop(0) if betas else dflt[1])
        fns.append(build(*args))
    k = len(defaults)
    return [fns[d * k:(d + 1) * k] for d in range(ndir)]


def _stack(xs, axis=0):
    return O.concatenate([O.expand_dims(x, axis) for x in xs], axis)


def _recurrent(ctx, n, gates, defaults, step):
    """The parts the three share; ``step(d, acts, xw_t, state, R, Rb, P) -> new state``
    where ``state`` is (H,) or (H, C)."""
    X, W, R = ctx.x(n, 0), ctx.x(n, 1), ctx.x(n, 2)
    layout = int(n.attr("layout", 0))
    if X.ndim != 3:
        raise n.error(f"X must be 3-d, got shape {X.shape}")
    if layout:
        X = O.transpose(X, (1, 0, 2))
    T, Bt, In = X.shape
    direction = n.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise n.error(f"direction {direction!r} is not one of forward, reverse, bidirectional")
    ndir = 2 if direction == "bidirectional" else 1
    Hs = int(n.attr("hidden_size", R.shape[-1]))
    gh = gates * Hs
    for name, v, want in (("W", W, (ndir, gh, In)), ("R", R, (ndir, gh, Hs))):
        if v.shape != want:
            raise n.error(f"{name} has shape {v.shape}, expected {want} (num_directions, "
                          f"{gates} * hidden_size, ...)")
    B = ctx.opt(n, 3)
    if B is not None and B.shape != (ndir, 2 * gh):
        raise n.error(f"B has shape {B.shape}, expected {(ndir, 2 * gh)}")
    lens = ctx.opt(n, 4)
    if lens is not None and ctx.known(n.inputs[4]) and (ctx.consts[n.inputs[4]] == T).all():
        lens = None                          # every sequence has the full length
    n_state = 2 if n.op == "LSTM" else 1
    init = []
    for k in range(n_state):
        s = ctx.opt(n, 5 + k)
        if s is not None and layout:
            s = O.transpose(s, (1, 0, 2))
        if s is not None and s.shape != (ndir, Bt, Hs):
            raise n.error(f"initial state {k} has shape {s.shape}, expected {(ndir, Bt, Hs)}")
        init.append(s)
    P = ctx.opt(n, 7) if n.op == "LSTM" else None
    acts = _activations(n, defaults, ndir)
    clip = n.attr("clip")
    if clip is not None:
        acts = [[(lambda f: lambda x: f(O.clip(x, -clip, clip)))(f) for f in a] for a in acts]
    zeros = O.constant(np.zeros((Bt, Hs), np.dtype(X.dtype)))
    valid_len = None if lens is None else O.reshape(O.cast(lens, "int64"), (Bt, 1))
    ys, finals = [], [[] for _ in range(n_state)]
    for d in range(ndir):
        rev = direction == "reverse" or d == 1
        xd = X
        if rev:
            xd = X[::-1] if lens is None else reverse_sequence(X, lens, 1, 0)
        xw = O.matmul(xd, O.transpose(W[d], (1, 0)))          # (T, Bt, gates*H): one GEMM
        if B is not None:
            xw = xw + B[d][:gh]
        Rt = O.transpose(R[d], (1, 0))
        Rb = B[d][gh:] if B is not None else None
        state = tuple(s[d] if s is not None else zeros for s in init)
        out = []
        for t in range(T):
            new = step(acts[d], xw[t], state, Rt, Rb, None if P is None else P[d], Hs)
            if valid_len is not None:            # past its length an entry keeps its state
                ok = O.constant(np.int64(t)) < valid_len
                new = tuple(O.where(ok, a, b) for a, b in zip(new, state))
                out.append(O.where(ok, new[0], zeros))
            else:
                out.append(new[0])
            state = new
        y = _stack(out)                                        # (T, Bt, H)
        if rev:
            y = y[::-1] if lens is None else reverse_sequence(y, lens, 1, 0)
        ys.append(y)
        for k in range(n_state):
            finals[k].append(state[k])
    Y = _stack(ys, 1)                                          # (T, ndir, Bt, H)
    outs = [Y] + [_stack(f) for f in finals]                   # (ndir, Bt, H)
    if layout:
        outs = [O.transpose(Y, (2, 0, 1, 3))] + [O.transpose(f, (1, 0, 2)) for f in outs[1:]]
    return outs


def _rh(h, Rt, Rb):
    y = O.matmul(h, Rt)
    return y + Rb if Rb is not None else y


@op("RNN")
def _rnn(ctx, n):
    def step(acts, xw, state, Rt, Rb, P, Hs):
        return (acts[0](xw + _rh(state[0], Rt, Rb)),)
    return _recurrent(ctx, n, 1, ("Tanh",), step)


@op("GRU")
def _gru(ctx, n):
    lbr = int(n.attr("linear_before_reset", 0))

    def step(acts, xw, state, Rt, Rb, P, Hs):
        f, g = acts
        (h,) = state
        z = f(xw[:, :Hs] + _rh(h, Rt[:, :Hs], None if Rb is None else Rb[:Hs]))
        r = f(xw[:, Hs:2 * Hs] + _rh(h, Rt[:, Hs:2 * Hs], None if Rb is None else Rb[Hs:2 * Hs]))
        rbh = None if Rb is None else Rb[2 * Hs:]
        if lbr:
            hh = g(xw[:, 2 * Hs:] + r * _rh(h, Rt[:, 2 * Hs:], rbh))
        else:
            hh = g(xw[:, 2 * Hs:] + _rh(r * h, Rt[:, 2 * Hs:], rbh))
        return ((1.0 - z) * hh + z * h,)
    return _recurrent(ctx, n, 3, ("Sigmoid", "Tanh"), step)


@op("LSTM")
def _lstm(ctx, n):
    if n.attr("input_forget", 0):
        raise n.error("input_forget=1 (coupled input and forget gates) is not supported")

    def step(acts, xw, state, Rt, Rb, P, Hs):
        f, g, hf = acts
        h, c = state
        pre = xw + _rh(h, Rt, Rb)                               # gates i, o, f, c
        gi, go, gf, gc_ = (pre[:, k * Hs:(k + 1) * Hs] for k in range(4))
        if P is not None:                                       # peepholes [Pi, Po, Pf]
            gi, gf = gi + P[:Hs] * c, gf + P[2 * Hs:] * c
        i, fg, cc = f(gi), f(gf), g(gc_)
        c_new = fg * c + i * cc
        if P is not None:
            go = go + P[Hs:2 * Hs] * c_new
        return f(go) * hf(c_new), c_new
    return _recurrent(ctx, n, 4, ("Sigmoid", "Tanh", "Tanh"), step)
