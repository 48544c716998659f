"""Hostile construction cases of the convolutional-network composites
(issue 13, ``graphc/ops/conv.py``), added to test_hostile's table by
``conv_cases``: every argument a caller can get wrong gets a clear error."""
from __future__ import annotations

import graphc as gc


def conv_cases(add, ph, junk, x, v, i, e0, B):
    """Add the cases with ``add(op, what, fn, expected exception)``."""
    S, D = gc.ShapeError, gc.DTypeError
    im = ph((1, 2, 4, 4), name="im")
    k3 = ph((3, 2, 3, 3), name="k3")
    for jn, j in junk[:4]:
        for op in ("conv2d", "conv1d"):
            add(op, f"{jn} input", lambda op=op, j=j: getattr(gc, op)(j, k3), (TypeError, ValueError))
        add("conv2d", f"{jn} weight", lambda j=j: gc.conv2d(im, j), (TypeError, ValueError))
        for op in ("pad", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"):
            add(op, f"{jn} input", lambda op=op, j=j: getattr(gc, op)(j, 1), (TypeError, ValueError))
        for op in ("global_avg_pool2d", "flatten", "argmax", "argmin"):
            add(op, f"{jn} input", lambda op=op, j=j: getattr(gc, op)(j), (TypeError, ValueError))
    for kw in [dict(stride=0), dict(stride=(1, 2, 3)), dict(dilation=-1), dict(padding=-2),
               dict(padding="full"), dict(padding=1.5), dict(groups=3), dict(groups=0),
               dict(padding="same", stride=2)]:
        add("conv2d", f"{kw!r}", lambda kw=kw: gc.conv2d(im, k3, **kw), S)
    add("conv2d", "channel mismatch", lambda: gc.conv2d(im, ph((3, 3, 3, 3), name="k33")), S)
    add("conv2d", "kernel larger than the input", lambda: gc.conv2d(im, ph((3, 2, 5, 1), name="k5")), S)
    add("conv2d", "2-d input", lambda: gc.conv2d(x, k3), S)
    add("conv2d", "bool input", lambda: gc.conv2d(ph((1, 2, 4, 4), B, name="bim"), k3), D)
    add("conv2d", "bias of the wrong shape", lambda: gc.conv2d(im, k3, v[:2]), S)
    add("conv1d", "4-d weight", lambda: gc.conv1d(im[0], k3), S)
    for pw in [-1, ((1, 1),) * 3, "a", (1.5, 1), None]:
        add("pad", f"pad_width {pw!r}", lambda pw=pw: gc.pad(x, pw), S)
    add("pad", "mode 'wrap'", lambda: gc.pad(x, 1, mode="wrap"), S)
    add("pad", "reflect wider than the axis", lambda: gc.pad(x, ((2, 0), (0, 0)), mode="reflect"), S)
    add("pad", "edge of an empty axis", lambda: gc.pad(e0, 1, mode="edge"), S)
    add("pad", "str value", lambda: gc.pad(x, 1, value="a"), S)
    add("pad", "fractional value for ints", lambda: gc.pad(i, 1, value=0.5), D)
    for op in ("max_pool2d", "avg_pool2d"):
        for kw in [dict(kernel_size=0), dict(kernel_size=5), dict(kernel_size=3, padding=2),
                   dict(kernel_size=2, stride=-1), dict(kernel_size=(2, 2, 2)),
                   dict(kernel_size=2, ceil_mode=None)]:
            add(op, f"{kw!r}", lambda op=op, kw=kw: getattr(gc, op)(im, **kw), S)
        add(op, "2-d input", lambda op=op: getattr(gc, op)(x, 2), S)
    add("max_pool2d", "dilation 0", lambda: gc.max_pool2d(im, 2, dilation=0), S)
    add("avg_pool2d", "divisor_override 0", lambda: gc.avg_pool2d(im, 2, divisor_override=0), S)
    for size in [0, (2, 2, 2), 1.5, "a"]:
        add("adaptive_avg_pool2d", f"output_size {size!r}",
            lambda size=size: gc.adaptive_avg_pool2d(im, size), S)
    add("global_avg_pool2d", "3-d input", lambda: gc.global_avg_pool2d(im[0]), S)
    for a, e in [(3, 1), (0, 5), (1.5, -1)]:
        add("flatten", f"start_dim {a!r} end_dim {e!r}", lambda a=a, e=e: gc.flatten(im, a, e), S)
    for op in ("argmax", "argmin"):
        for ax in [2, -3, 1.5, (0, 1)]:
            add(op, f"axis {ax!r}", lambda op=op, ax=ax: getattr(gc, op)(x, ax), S)
        add(op, "an empty axis", lambda op=op: getattr(gc, op)(e0, 0), S)
    # windows (ops/windows.py): every attribute checked, through the public
    # function and through gc.make (what a pass or plugin would build)
    for jn, j in junk[:4]:
        add("windows", f"{jn} input", lambda j=j: gc.windows(j, (2, 2)), (TypeError, ValueError))
    for kw in [dict(kernel=(5, 1)), dict(kernel=(2, 2), stride=0), dict(kernel=(2, 2), stride=(1,)),
               dict(kernel=(2, 2), dilation=(1, -1)), dict(kernel=(2, 0)), dict(kernel=()),
               dict(kernel=(2, 2, 2, 2, 2)), dict(kernel=(1.5, 2)), dict(kernel=(3, 3), dilation=2)]:
        add("windows", f"{kw!r}", lambda kw=kw: gc.windows(im, **kw), S)
    for attrs in [dict(kernel=(2, 2), stride=(1, 1)), dict(kernel=[2, 2], stride=(1, 1), dilation="a"),
                  dict(kernel=(2, 2), stride=(1, 1), dilation=(1, 1), extra=1)]:
        add("windows", f"make {attrs!r}", lambda attrs=attrs: gc.make("windows", (im,), attrs),
            (gc.AttrError, S))
