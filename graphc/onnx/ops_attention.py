"""The converters of ONNX's attention ops: Attention (opsets 23-25): scaled
dot-product attention with an optional mask, causal masking, an internal KV
cache (past_key/past_value) or an external one (nonpad_kv_seqlen, a graph
value), sliding windows, grouped-query heads and softcap, as graphc matmuls
and a softmax (the semantics of onnx.reference's op_attention);
RotaryEmbedding; LinearAttention (its recurrence unrolled)."""
from __future__ import annotations

import math

import numpy as np

from .. import ops as O
from ..ir import dtypes as D
from .convert import op


def _heads(x, h):
    """(B, S, h * d) -> (B, h, S, d)."""
    b, s, hidden = x.shape
    return O.transpose(O.reshape(x, (b, s, h, hidden // h)), (0, 2, 1, 3))


@op("Attention")
def _attention(ctx, n):
    q, k, v = ctx.x(n, 0), ctx.x(n, 1), ctx.x(n, 2)
    mask, pk, pv = ctx.opt(n, 3), ctx.opt(n, 4), ctx.opt(n, 5)
    nonpad = ctx.opt(n, 6)              # an external KV cache: valid keys per batch entry
    if nonpad is not None and pk is not None:
        raise n.error("nonpad_kv_seqlen cannot be combined with past_key / past_value")
    left, right = int(n.attr("left_window_size", -1)), int(n.attr("right_window_size", -1))
    if left < -1 or right < -1:
        raise n.error(f"left_window_size ({left}) and right_window_size ({right}) must be -1 "
                      "or non-negative")
    dt = q.dtype
    three = q.ndim == 3
    if three:
        qh, kvh = n.attr("q_num_heads"), n.attr("kv_num_heads")
        if qh is None or kvh is None:
            raise n.error("3-d inputs need the q_num_heads and kv_num_heads attributes")
        q, k, v = _heads(q, qh), _heads(k, kvh), _heads(v, kvh)
    scale = n.attr("scale")
    scale = 1 / math.sqrt(q.shape[3]) if scale is None else scale
    s = float(np.sqrt(np.float64(scale)).astype(dt))
    if pk is not None:
        k = O.concatenate([pk, k], 2)
    if pv is not None:
        v = O.concatenate([pv, v], 2)
    present_k, present_v = k, v
    L, S = q.shape[2], k.shape[2]
    neg = O.constant(-np.inf, dt)
    zero = O.constant(0, dt)
    bias = None
    if mask is not None:
        pad = S - mask.shape[-1]
        if pad > 0:
            widths = ((0, 0),) * (mask.ndim - 1) + ((0, pad),)
            mask = O.pad(mask, widths, value=False if D.is_bool(mask.dtype) else -np.inf)
        bias = O.where(mask, zero, neg) if D.is_bool(mask.dtype) else mask
    causal = bool(n.attr("is_causal", 0))
    if nonpad is not None:              # bottom-right alignment per entry: offset[b] = nonpad[b] - L
        npd = O.cast(nonpad, D.int64)
        off = O.reshape(npd - L, (npd.shape[0], 1, 1, 1))
        diff = O.constant(np.arange(L).reshape(L, 1)) + off - O.constant(np.arange(S).reshape(1, S))
        valid = O.reshape(O.constant(np.arange(S)), (1, 1, 1, S)) < O.reshape(npd, (-1, 1, 1, 1))
    else:                               # the internal cache's length (or 0): known at load time
        offset = pk.shape[2] if pk is not None else 0
        diff = O.constant(np.arange(L)[:, None] + offset - np.arange(S)[None, :])
        valid = None
    allowed = [diff >= 0] if causal else []            # key j at most query i + offset
    if left >= 0:
        allowed.append(diff <= left)
    if right >= 0:
        allowed.append(-diff <= right)
    if valid is not None:
        allowed.append(valid)
    for a in allowed:
        term = O.where(a, zero, neg)
        bias = term if bias is None else bias + term
    hq, hk = q.shape[1], k.shape[1]
    if hq != hk and hq % hk == 0:        # grouped-query: each KV head serves hq / hk heads
        r = hq // hk
        b = k.shape[0]
        k = O.reshape(O.broadcast_to(O.reshape(k, (b, hk, 1) + k.shape[2:]), (b, hk, r) + k.shape[2:]),
                      (b, hq) + k.shape[2:])
        v = O.reshape(O.broadcast_to(O.reshape(v, (b, hk, 1) + v.shape[2:]), (b, hk, r) + v.shape[2:]),
                      (b, hq) + v.shape[2:])
    qk = O.matmul(q * s, O.transpose(k * s, (0, 1, 3, 2)))
    softcap = float(n.attr("softcap", 0.0))
    if softcap > 0:
        qk = O.tanh(qk / softcap) * softcap
    mode = n.attr("qk_matmul_output_mode", 0)
    qk_out = qk
    logits = qk if bias is None else qk + bias
    if mode == 2:
        qk_out = logits
    p = O.softmax(logits, -1)
    if bias is not None:        # a row whose every key is masked attends to nothing
        dead = O.equal(O.max(bias, -1, keepdims=True), neg)
        p = O.where(dead, zero, p)
    if mode == 3:
        qk_out = p
    y = O.matmul(p, v)
    if three:
        y = O.transpose(y, (0, 2, 1, 3))
        y = O.reshape(y, y.shape[:2] + (-1,))
    return [y, present_k, present_v, qk_out]


@op("RotaryEmbedding")
def _rotary(ctx, n):
    """RoPE: (x1, x2) -> (cos x1 - sin x2, sin x1 + cos x2) on the first
    ``rotary_embedding_dim`` channels of each head (halves, or even/odd channels
    when ``interleaved``), cos and sin read from the caches at ``position_ids``."""
    x, cos, sin = ctx.x(n, 0), ctx.x(n, 1), ctx.x(n, 2)
    pos = ctx.opt(n, 3)
    shape = x.shape
    if x.ndim == 4:                                   # (B, heads, S, D) -> (B, S, heads, D)
        x = O.transpose(x, (0, 2, 1, 3))
    elif x.ndim == 3:
        heads = int(n.attr("num_heads", 0))
        if heads <= 0 or shape[2] % heads:
            raise n.error(f"a 3-d input {shape} needs num_heads dividing {shape[2]}, got {heads}")
        x = O.reshape(x, (shape[0], shape[1], heads, shape[2] // heads))
    else:
        raise n.error(f"the input must be 3-d or 4-d, got shape {shape}")
    D = x.shape[3]
    rd = int(n.attr("rotary_embedding_dim", 0)) or D
    if rd % 2 or rd > D:
        raise n.error(f"rotary_embedding_dim {rd} must be even and at most the head size {D}")
    if pos is not None:
        cos, sin = O.take(cos, pos, 0), O.take(sin, pos, 0)     # (B, S, rd/2)
    if cos.shape[-1] != rd // 2 or sin.shape[-1] != rd // 2:
        raise n.error(f"the caches' last dimension ({cos.shape[-1]}, {sin.shape[-1]}) must be "
                      f"rotary_embedding_dim / 2 = {rd // 2}")
    cos, sin = O.expand_dims(cos, 2), O.expand_dims(sin, 2)
    rot, keep = x[..., :rd], x[..., rd:]
    inter = bool(n.attr("interleaved", 0))
    x1, x2 = (rot[..., 0::2], rot[..., 1::2]) if inter else (rot[..., :rd // 2], rot[..., rd // 2:])
    re, im = cos * x1 - sin * x2, sin * x1 + cos * x2
    if inter:
        rot = O.reshape(O.concatenate([O.expand_dims(re, -1), O.expand_dims(im, -1)], -1),
                        rot.shape)
    else:
        rot = O.concatenate([re, im], -1)
    y = O.concatenate([rot, keep], -1) if rd < D else rot
    return O.reshape(y, shape) if len(shape) == 3 else O.transpose(y, (0, 2, 1, 3))


def _heads(x, h):
    """(B, T, H*D) -> (B, H, T, D)."""
    b, t, hd = x.shape
    return O.transpose(O.reshape(x, (b, t, h, hd // h)), (0, 2, 1, 3))


@op("LinearAttention")
def _linear_attention(ctx, n):
    """The recurrence of onnx.reference's LinearAttention, unrolled over the T steps
    (einsums per step): state S (B, H_kv, d_k, d_v), optionally decayed by exp(g_t)
    (gated), the value corrected by beta_t (v_t - S^T k_t) (delta), S += k_t v_t^T,
    output scale * q_t S (query heads reading their group's KV head)."""
    q, k, v = ctx.x(n, 0), ctx.x(n, 1), ctx.x(n, 2)
    past, decay, beta = ctx.opt(n, 3), ctx.opt(n, 4), ctx.opt(n, 5)
    rule = n.attr("update_rule", "gated_delta")
    if rule not in ("linear", "gated", "delta", "gated_delta"):
        raise n.error(f"update_rule {rule!r} is not one of linear, gated, delta, gated_delta")
    hq, hk = n.attr("q_num_heads"), n.attr("kv_num_heads")
    if not hq or not hk or hq % hk:
        raise n.error(f"q_num_heads ({hq}) must be a positive multiple of kv_num_heads ({hk})")
    gating, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    for what, val, need in (("decay", decay, gating), ("beta", beta, delta)):
        if need != (val is not None):
            raise n.error(f"update_rule {rule!r} {'needs' if need else 'forbids'} the {what} input")
    if any(a.ndim != 3 for a in (q, k, v)):
        raise n.error("query, key and value must be 3-d (B, T, heads * D)")
    B, T, _ = q.shape
    dk, dv, group = q.shape[2] // hq, v.shape[2] // hk, hq // hk
    q4, k4, v4 = _heads(q, hq), _heads(k, hk), _heads(v, hk)
    if decay is not None:
        if decay.shape[-1] == hk:
            decay = O.transpose(O.reshape(decay, (B, T, hk, 1)), (0, 2, 1, 3))
        elif decay.shape[-1] == hk * dk:
            decay = _heads(decay, hk)
        else:
            raise n.error(f"decay's last dimension {decay.shape[-1]} must be kv_num_heads "
                          f"({hk}) or kv_num_heads * d_k ({hk * dk})")
    if beta is not None:
        if beta.shape[-1] not in (hk, 1):
            raise n.error(f"beta's last dimension {beta.shape[-1]} must be kv_num_heads or 1")
        beta = O.transpose(O.reshape(beta, (B, T, beta.shape[-1], 1)), (0, 2, 1, 3))
    if past is not None and past.shape != (B, hk, dk, dv):
        raise n.error(f"past_state has shape {past.shape}, expected {(B, hk, dk, dv)}")
    state = past if past is not None else O.constant(np.zeros((B, hk, dk, dv), np.dtype(q.dtype)))
    scale = float(n.attr("scale", 0.0)) or 1.0 / math.sqrt(dk)
    outs = []
    for t in range(T):
        kt, vt = k4[:, :, t, :], v4[:, :, t, :]
        if gating:
            state = state * O.expand_dims(O.exp(decay[:, :, t, :]), -1)
        if delta:
            vt = beta[:, :, t, :] * (vt - O.einsum("bhdm,bhd->bhm", state, kt))
        state = state + O.expand_dims(kt, -1) * O.expand_dims(vt, -2)
        read = state
        if group > 1:                                # query head h reads KV head h // group
            read = O.reshape(O.broadcast_to(O.expand_dims(state, 2), (B, hk, group, dk, dv)),
                             (B, hq, dk, dv))
        outs.append(O.einsum("bhd,bhdm->bhm", q4[:, :, t, :], read) * scale)
    y = O.concatenate([O.expand_dims(o, 2) for o in outs], 2)        # (B, Hq, T, dv)
    return [O.reshape(O.transpose(y, (0, 2, 1, 3)), (B, T, hq * dv)), state]
