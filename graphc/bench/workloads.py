"""The workload registry and the workloads of issue 4.

A workload is one function decorated with :func:`workload`. It takes
``quick`` (tiny sizes, for tests) and returns a list of :class:`Case`; each
case carries its inputs' reference result (numpy, float64), the
implementations (built by :func:`impls` from one factory per peer) and the
targets graphc should reach. Adding a workload is adding one such function::

    @workload("axpy", "y = a*x + y over 2**20 float32 elements")
    def axpy(quick):
        n = 1024 if quick else 2**20
        x, y = rand(n), rand(n)
        ...
        return [Case("axpy", "axpy", "...", reference=lambda: [...],
                     impls=impls(numpy=..., graphc=..., jax=..., torch=...))]

Factories return a zero-argument callable that computes the case's result
from inputs prepared in advance (so only the computation is timed):

* ``numpy()``,
* ``graphc(backend)`` with backend ``"llvm"`` (row ``graphc``) or
  ``"interp"`` (row ``graphc-interp``),
* ``jax(jax)`` -- must block until the result is ready,
* ``torch(torch, compiled)`` -- eager (row ``torch``) or ``torch.compile``.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from .. import compiler, ops
from ..autodiff import grad
from ..ops.common import parameter, placeholder
from .targets import Target

WORKLOADS: dict[str, Workload] = {}
IMPL_ORDER = ("graphc", "graphc-interp", "numpy", "jax.jit", "torch", "torch.compile")


@dataclass
class Workload:
    name: str
    description: str
    make_cases: Callable[[bool], list]
    run_first: bool = False     # timed before the others (first-compile measurements)


@dataclass
class Case:
    """One benchmark: a fixed input, its reference result, implementations.

    ``kind="time"``: the implementations' callables are timed in interleaved
    rounds. ``kind="compile"``: each call of a callable compiles a fresh
    function and runs it once; the first call in the process and the later
    ("fresh") ones are reported apart.
    """
    workload: str
    name: str
    description: str
    reference: Callable[[], list]
    impls: dict
    targets: list = field(default_factory=list)
    flops: float | None = None
    rtol: float = 1e-4
    atol: float = 1e-5          # relative to the largest |reference| of each output
    atol_abs: list | None = None  # or one absolute tolerance per output
    kind: str = "time"


def workload(name: str, description: str, run_first: bool = False):
    """Register ``fn(quick) -> list[Case]`` as the workload ``name``."""
    def deco(fn):
        if name in WORKLOADS:
            raise ValueError(f"bench: workload {name!r} is registered twice")
        WORKLOADS[name] = Workload(name, description, fn, run_first)
        return fn
    return deco


class Skip(Exception):
    """This implementation cannot run here (peer not installed, ...)."""


def impls(numpy=None, graphc=None, jax=None, torch=None) -> dict:
    """Implementation rows from one factory per peer (see the module doc)."""
    d = {}
    if graphc is not None:
        d["graphc"] = lambda P: graphc("llvm")
        d["graphc-interp"] = lambda P: graphc("interp")
    if numpy is not None:
        d["numpy"] = lambda P: numpy()
    if jax is not None:
        d["jax.jit"] = lambda P: jax(P.need("jax"))
    if torch is not None:
        d["torch"] = lambda P: torch(P.need("torch"), False)
        d["torch.compile"] = lambda P: torch(P.need("torch"), True)
    return d


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def jax_call(jax, fn, *args):
    """A callable running ``jax.jit(fn)(*args)`` and waiting for the result."""
    f = jax.jit(fn)
    dev = [jax.device_put(a) for a in args]
    return lambda: jax.block_until_ready(f(*dev))


def torch_call(torch, fn, compiled: bool, *args):
    f = torch.compile(fn) if compiled else fn
    ts = [torch.from_numpy(np.ascontiguousarray(a)) for a in args]

    def call():
        with torch.no_grad():
            return f(*ts)
    return call


# ---------------------------------------------------------------- mlp_step

MLP_SIZES = (784, 256, 128, 10)


def mlp_graph(batch: int = 128, sizes=MLP_SIZES, seed: int = 0):
    """The MLP of mlp_step as a graphc graph (ReLU between layers, mean
    softmax cross-entropy, float32), with random weights and a batch of data:
    ``(loss, params, feeds)`` where ``params`` alternates weights and biases
    and ``feeds`` holds ``x`` and ``y``. For scripts and tests that need the
    graph itself (kernel counts, thread checks, techniques)."""
    r = np.random.default_rng(seed)
    x = placeholder((batch, sizes[0]), "float32", name="x")
    y = placeholder((batch,), "int64", name="y")
    params, h = [], x
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = parameter((r.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32),
                         name=f"w{k}")
        bias = parameter(np.zeros(b, np.float32), name=f"b{k}")
        params += [w, bias]
        h = h @ w + bias
        if k < len(sizes) - 2:
            h = ops.relu(h)
    loss = ops.mean(ops.softmax_cross_entropy(h, y))
    feeds = {"x": r.standard_normal((batch, sizes[0])).astype(np.float32),
             "y": r.integers(0, sizes[-1], batch)}
    return loss, params, feeds


class MLP:
    """The mlp_step problem: data, parameters, and every implementation."""

    def __init__(self, quick: bool, seed: int = 0):
        self.sizes = (32, 16, 8, 4) if quick else MLP_SIZES
        self.batch = 8 if quick else 128
        r = rng(seed)
        self.x = r.standard_normal((self.batch, self.sizes[0])).astype(np.float32)
        self.y = r.integers(0, self.sizes[-1], self.batch).astype(np.int64)
        self.params = []
        for a, b in zip(self.sizes[:-1], self.sizes[1:]):
            self.params.append((r.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32))
            self.params.append((0.1 * r.standard_normal(b)).astype(np.float32))

    @property
    def shape_text(self) -> str:
        return "-".join(map(str, self.sizes)) + f", batch {self.batch}"

    # numpy: forward and hand-written backward, in the dtype of its inputs
    @staticmethod
    def numpy_step(x, y, params):
        n = x.shape[0]
        rows = np.arange(n)
        acts, pre = [x], []
        h = x
        L = len(params) // 2
        for k in range(L):
            z = h @ params[2 * k] + params[2 * k + 1]
            pre.append(z)
            h = np.maximum(z, 0) if k < L - 1 else z
            acts.append(h)
        z = pre[-1]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        s = e.sum(axis=1, keepdims=True)
        p = e / s
        loss = -np.mean(np.log(p[rows, y]))
        dz = p
        dz[rows, y] -= 1
        dz /= n
        grads = [None] * len(params)
        for k in range(L - 1, -1, -1):
            grads[2 * k] = acts[k].T @ dz
            grads[2 * k + 1] = dz.sum(axis=0)
            if k > 0:
                dz = (dz @ params[2 * k].T) * (pre[k - 1] > 0)
        return [loss, *grads]

    def reference(self):
        return self.numpy_step(self.x.astype(np.float64), self.y,
                               [p.astype(np.float64) for p in self.params])

    def numpy(self):
        x, y, ps = self.x, self.y, self.params
        return lambda: self.numpy_step(x, y, ps)

    def graphc_function(self, backend: str, cache: bool = True):
        x = placeholder(self.x.shape, "float32", name="x")
        y = placeholder(self.y.shape, "int64", name="y")
        ps = [parameter(p.copy(), name=f"p{k}") for k, p in enumerate(self.params)]
        h = x
        L = len(ps) // 2
        for k in range(L):
            h = h @ ps[2 * k] + ps[2 * k + 1]
            if k < L - 1:
                h = ops.relu(h)
        loss = ops.mean(ops.softmax_cross_entropy(h, y))
        grads = grad(loss, ps)
        if backend == "interp":
            return compiler.compile([loss, *grads], inputs=[x, y], backend=backend)
        return compiler.compile([loss, *grads], inputs=[x, y], backend=backend, cache=cache)

    def graphc(self, backend: str):
        f = self.graphc_function(backend)
        X, Y = self.x, self.y
        return lambda: f(X, Y)

    def jax_fn(self, jax):
        jnp = jax.numpy

        def loss_fn(params, x, y):
            h = x
            L = len(params) // 2
            for k in range(L):
                h = h @ params[2 * k] + params[2 * k + 1]
                if k < L - 1:
                    h = jax.nn.relu(h)
            logp = jax.nn.log_softmax(h, axis=1)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        return jax.value_and_grad(loss_fn)

    def jax_args(self, jax):
        return ([jax.device_put(p) for p in self.params], jax.device_put(self.x),
                jax.device_put(self.y.astype(np.int32)))

    def jax(self, jax):
        f = jax.jit(self.jax_fn(jax))
        ps, x, y = self.jax_args(jax)
        return lambda: jax.block_until_ready(f(ps, x, y))

    @staticmethod
    def torch_loss(torch):
        def loss_fn(params, x, y):
            h = x
            L = len(params) // 2
            for k in range(L):
                h = h @ params[2 * k] + params[2 * k + 1]
                if k < L - 1:
                    h = torch.relu(h)
            return torch.nn.functional.cross_entropy(h, y)
        return loss_fn

    def torch(self, torch, compiled: bool):
        loss_fn = self.torch_loss(torch)
        if compiled:
            loss_fn = torch.compile(loss_fn)
        ps = [torch.from_numpy(p.copy()).requires_grad_(True) for p in self.params]
        x, y = torch.from_numpy(self.x), torch.from_numpy(self.y)

        def step():
            loss = loss_fn(ps, x, y)
            return (loss, *torch.autograd.grad(loss, ps))
        return step


@workload("mlp_step", "loss + all gradients of a 784-256-128-10 MLP (ReLU, softmax "
          "cross-entropy), batch 128, float32")
def mlp_step(quick: bool) -> list[Case]:
    m = MLP(quick)
    return [Case("mlp_step", "mlp_step", f"loss + 6 gradients, MLP {m.shape_text}, float32",
                 reference=m.reference, rtol=1e-3, atol=1e-4,
                 impls=impls(numpy=m.numpy, graphc=m.graphc, jax=m.jax, torch=m.torch),
                 targets=[Target(vs="graphc-interp", ratio=1.5), Target(vs="jax.jit", ratio=1.2)])]


# ---------------------------------------------------------------- elemwise

@workload("elemwise", "sum(tanh(x*a+b) * sigmoid(x) - 0.1*x) over 2**20 float32 elements "
          "(x, a, b arrays)")
def elemwise(quick: bool) -> list[Case]:
    n = 4096 if quick else 2 ** 20
    r = rng(1)
    x, a, b = (r.standard_normal(n).astype(np.float32) for _ in range(3))

    def terms64():
        x64, a64, b64 = (v.astype(np.float64) for v in (x, a, b))
        return np.tanh(x64 * a64 + b64) / (1.0 + np.exp(-x64)) - 0.1 * x64

    t = terms64()
    # a float32 sum of n terms in any order is within ~n*eps*sum|t| (worst case)
    # and ~sqrt(n)*eps*sum|t| in practice; allow 1e-5*sum|t| (~150*eps)
    atol = 1e-5 * float(np.abs(t).sum())

    def np_impl():
        def f():
            with np.errstate(over="ignore"):
                return np.sum(np.tanh(x * a + b) * (1 / (1 + np.exp(-x))) - np.float32(0.1) * x)
        return f

    def gc_impl(backend):
        X, A, B = (placeholder((n,), "float32", name=k) for k in "xab")
        f = compiler.compile(ops.sum(ops.tanh(X * A + B) * ops.sigmoid(X) - 0.1 * X),
                       inputs=[X, A, B], backend=backend)
        return lambda: f(x, a, b)

    def jax_impl(jax):
        jnp = jax.numpy
        return jax_call(jax, lambda x, a, b: jnp.sum(jnp.tanh(x * a + b) * jax.nn.sigmoid(x)
                                                     - 0.1 * x), x, a, b)

    def torch_impl(torch, compiled):
        return torch_call(torch, lambda x, a, b: (torch.tanh(x * a + b) * torch.sigmoid(x)
                                                  - 0.1 * x).sum(), compiled, x, a, b)

    return [Case("elemwise", "elemwise", f"sum(tanh(x*a+b)*sigmoid(x) - 0.1*x), n={n}, float32",
                 reference=lambda: [np.float64(t.sum())], atol_abs=[atol],
                 impls=impls(numpy=np_impl, graphc=gc_impl, jax=jax_impl, torch=torch_impl),
                 targets=[Target(vs="numpy", ratio=5.0), Target(vs="jax.jit", ratio=1.2)])]


# ---------------------------------------------------------------- matmul

@workload("matmul", "C = A @ B, float32, 512x512 and 1024x1024 (GFLOP/s against numpy's BLAS)")
def matmul(quick: bool) -> list[Case]:
    cases = []
    for n in ((48, 96) if quick else (512, 1024)):
        r = rng(n)
        A = r.standard_normal((n, n)).astype(np.float32)
        B = r.standard_normal((n, n)).astype(np.float32)

        def gc_impl(backend, A=A, B=B, n=n):
            a = placeholder((n, n), "float32", name="a")
            b = placeholder((n, n), "float32", name="b")
            f = compiler.compile(a @ b, inputs=[a, b], backend=backend)
            return lambda: f(A, B)

        cases.append(Case(
            "matmul", f"matmul/{n}", f"{n}x{n} @ {n}x{n}, float32",
            reference=lambda A=A, B=B: [A.astype(np.float64) @ B.astype(np.float64)],
            rtol=1e-4, atol=1e-4, flops=2.0 * n ** 3,
            impls=impls(numpy=lambda A=A, B=B: (lambda: A @ B), graphc=gc_impl,
                        jax=lambda jax, A=A, B=B: jax_call(jax, lambda a, b: a @ b, A, B),
                        torch=lambda torch, c, A=A, B=B: torch_call(
                            torch, lambda a, b: a @ b, c, A, B)),
            targets=[Target(vs="numpy", ratio=0.9, text="graphc GFLOP/s >= 0.9x numpy's")]))
    return cases


# ---------------------------------------------------------------- tiny_call

@workload("tiny_call", "one call of a batch-1 forward of a 16-32-4 MLP (ReLU), float32: "
          "the fixed cost of a call")
def tiny_call(quick: bool) -> list[Case]:
    r = rng(2)
    x = r.standard_normal((1, 16)).astype(np.float32)
    w0 = (r.standard_normal((16, 32)) * 0.3).astype(np.float32)
    b0 = (0.1 * r.standard_normal(32)).astype(np.float32)
    w1 = (r.standard_normal((32, 4)) * 0.3).astype(np.float32)
    b1 = (0.1 * r.standard_normal(4)).astype(np.float32)

    def ref():
        h = np.maximum(x.astype(np.float64) @ w0 + b0, 0)
        return [h @ w1 + b1]

    def np_impl():
        return lambda: np.maximum(x @ w0 + b0, 0) @ w1 + b1

    def gc_impl(backend):
        X = placeholder((1, 16), "float32", name="x")
        p = [parameter(v.copy(), name=k) for k, v in zip(("w0", "b0", "w1", "b1"),
                                                             (w0, b0, w1, b1))]
        f = compiler.compile(ops.relu(X @ p[0] + p[1]) @ p[2] + p[3], inputs=[X], backend=backend)
        return lambda: f(x)

    def jax_impl(jax):
        f = jax.jit(lambda ps, x: jax.nn.relu(x @ ps[0] + ps[1]) @ ps[2] + ps[3])
        ps = [jax.device_put(v) for v in (w0, b0, w1, b1)]
        X = jax.device_put(x)
        return lambda: jax.block_until_ready(f(ps, X))

    def torch_impl(torch, compiled):
        ps = [torch.from_numpy(v) for v in (w0, b0, w1, b1)]
        return torch_call(torch, lambda x: torch.relu(x @ ps[0] + ps[1]) @ ps[2] + ps[3],
                          compiled, x)

    return [Case("tiny_call", "tiny_call", "batch-1 forward, MLP 16-32-4, float32",
                 reference=ref, rtol=1e-4, atol=1e-5,
                 impls=impls(numpy=np_impl, graphc=gc_impl, jax=jax_impl, torch=torch_impl),
                 targets=[Target(max_seconds=3e-6, text="graphc <= 3 us per call")])]


# ---------------------------------------------------------------- compile

@workload("compile", "time to a first result of mlp_step from nothing: build + differentiate "
          "+ compile + first call, fresh each time", run_first=True)
def compile_time(quick: bool) -> list[Case]:
    m = MLP(quick)

    def gc_impl(P):
        X, Y = m.x, m.y
        # cache=False: every compile runs the passes and LLVM (no compile-cache hit)
        return lambda: m.graphc_function("llvm", cache=False)(X, Y)

    def jax_impl(P):
        jax = P.need("jax")
        ps, x, y = m.jax_args(jax)
        # a new Python function each time: jax.jit caches by function identity
        return lambda: jax.block_until_ready(jax.jit(m.jax_fn(jax))(ps, x, y))

    def torch_impl(P):
        torch = P.need("torch")
        ps = [torch.from_numpy(p.copy()).requires_grad_(True) for p in m.params]
        x, y = torch.from_numpy(m.x), torch.from_numpy(m.y)
        cfg = getattr(getattr(torch, "compiler", None), "config", None)

        def step():
            torch._dynamo.reset()              # forget earlier compilations
            loss_fn = torch.compile(m.torch_loss(torch))
            ctx = cfg.patch(force_disable_caches=True) if cfg is not None else nullcontext()
            with ctx, warnings.catch_warnings():   # no on-disk cache hits: a cold compile
                warnings.simplefilter("ignore")
                loss = loss_fn(ps, x, y)
                return (loss, *torch.autograd.grad(loss, ps))
        return step

    return [Case("compile", "compile", f"mlp_step ({m.shape_text}) from nothing to its first "
                 "result", reference=m.reference, rtol=1e-3, atol=1e-4, kind="compile",
                 impls={"graphc": gc_impl, "jax.jit": jax_impl, "torch.compile": torch_impl},
                 targets=[Target(max_seconds=0.3, stat="first", text="graphc <= 0.3 s cold")])]
