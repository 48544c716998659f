"""The ``train_step`` workload (issue 5): one whole training step — forward,
softmax cross-entropy, backward and Adam's update of every parameter — of a
784-256-128-10 ReLU MLP, batch 128, float32.

graphc compiles it with ``nn`` and ``optim.Adam`` into one call that
writes the parameters in place; numpy runs the same step written by hand;
PyTorch eager runs ``loss.backward(); Adam.step()``; JAX jits
``value_and_grad`` plus the Adam update (donating its buffers). Each row
keeps its own parameters and optimizer state across calls; the check compares
each implementation's first step's loss with the reference.
"""
from __future__ import annotations

import numpy as np

from .. import compiler, nn, optim
from ..ops import relu
from ..ops.common import placeholder
from .workloads import Case, impls, rng, workload

LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8


class TrainStep:
    def __init__(self, quick: bool):
        self.sizes = (16, 32, 16, 4) if quick else (784, 256, 128, 10)
        self.batch = 8 if quick else 128
        r = rng(5)
        self.x = r.standard_normal((self.batch, self.sizes[0])).astype(np.float32)
        self.y = r.integers(0, self.sizes[-1], self.batch).astype(np.int64)
        self.weights = []
        for a, b in zip(self.sizes[:-1], self.sizes[1:]):
            bound = 1 / np.sqrt(a)                       # torch.nn.Linear's init
            self.weights.append((r.uniform(-bound, bound, (a, b)).astype(np.float32),
                                 r.uniform(-bound, bound, b).astype(np.float32)))

    def reference(self):
        h = self.x.astype(np.float64)
        for k, (w, b) in enumerate(self.weights):
            h = h @ w + b
            if k < len(self.weights) - 1:
                h = np.maximum(h, 0)
        z = h - h.max(1, keepdims=True)
        lse = np.log(np.exp(z).sum(1))
        return [np.float64(np.mean(lse - z[np.arange(self.batch), self.y]))]

    def graphc(self, backend: str):
        n = len(self.weights)
        model = nn.Sequential(*[nn.Dense(a, b, activation=relu if k < n - 1 else None)
                                   for k, (a, b) in enumerate(zip(self.sizes[:-1],
                                                                  self.sizes[1:]))])
        for layer, (w, b) in zip(model, self.weights):
            layer.weight.value, layer.bias.value = w, b
        x = placeholder(self.x.shape, "float32", name="x")
        y = placeholder(self.y.shape, "int64", name="y")
        loss = nn.cross_entropy(model(x), y)
        step = compiler.compile(loss, inputs=[x, y], backend=backend,
                          updates=optim.Adam(LR).updates(loss, model.parameters()))
        X, Y = self.x, self.y
        return lambda: step(X, Y)

    def numpy(self):
        params = [p.copy() for wb in self.weights for p in wb]
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        state = {"t": 0}
        nl = len(self.weights)
        x, y = self.x, self.y

        def step():
            hs, h = [x], x
            for k in range(nl):
                h = h @ params[2 * k] + params[2 * k + 1]
                if k < nl - 1:
                    h = np.maximum(h, 0)
                hs.append(h)
            z = h - h.max(1, keepdims=True)
            e = np.exp(z)
            s = e.sum(1, keepdims=True)
            n = len(y)
            loss = np.mean(np.log(s[:, 0]) - z[np.arange(n), y])
            d = e / s
            d[np.arange(n), y] -= 1
            d /= n
            grads = [None] * len(params)
            for k in reversed(range(nl)):
                grads[2 * k] = hs[k].T @ d
                grads[2 * k + 1] = d.sum(0)
                if k:
                    d = (d @ params[2 * k].T) * (hs[k] > 0)
            state["t"] += 1
            t = state["t"]
            step_size = np.float32(LR / (1 - B1 ** t))
            bc2 = np.float32(np.sqrt(1 - B2 ** t))
            for p, g, mi, vi in zip(params, grads, m, v):
                mi *= B1
                mi += (1 - B1) * g
                vi *= B2
                vi += (1 - B2) * g * g
                p -= step_size * mi / (np.sqrt(vi) / bc2 + np.float32(EPS))
            return loss
        return step

    def torch(self, torch, compiled: bool):
        if compiled:
            raise RuntimeError("not measured: torch.compile of a whole training step")
        layers = []
        n = len(self.weights)
        for k, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if k < n - 1:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
        with torch.no_grad():
            lins = [mod for mod in model if isinstance(mod, torch.nn.Linear)]
            for lin, (w, b) in zip(lins, self.weights):
                lin.weight.copy_(torch.from_numpy(w.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        x, y = torch.from_numpy(self.x), torch.from_numpy(self.y)

        def step():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss.detach()
        return step

    def jax(self, jax):
        jnp = jax.numpy

        def loss_fn(params, x, y):
            h = x
            for k, (w, b) in enumerate(params):
                h = h @ w + b
                if k < len(params) - 1:
                    h = jax.nn.relu(h)
            logp = jax.nn.log_softmax(h)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], 1))

        def update(params, m, v, t, x, y):
            loss, g = jax.value_and_grad(loss_fn)(params, x, y)
            t = t + 1
            tm = jax.tree_util.tree_map
            m = tm(lambda a, b: a + (1 - B1) * (b - a), m, g)
            v = tm(lambda a, b: B2 * a + (1 - B2) * b * b, v, g)
            bc1 = 1 - B1 ** t
            bc2 = jnp.sqrt(1 - B2 ** t)
            params = tm(lambda p, a, b: p - (LR / bc1) * a / (jnp.sqrt(b) / bc2 + EPS),
                        params, m, v)
            return params, m, v, t, loss

        jstep = jax.jit(update, donate_argnums=(0, 1, 2))
        st = {"p": [(jnp.asarray(w), jnp.asarray(b)) for w, b in self.weights]}
        st["m"] = jax.tree_util.tree_map(jnp.zeros_like, st["p"])
        st["v"] = jax.tree_util.tree_map(jnp.zeros_like, st["p"])
        st["t"] = jnp.float32(0)
        x, y = jax.device_put(self.x), jax.device_put(self.y.astype(np.int32))

        def step():
            st["p"], st["m"], st["v"], st["t"], loss = jstep(st["p"], st["m"], st["v"],
                                                             st["t"], x, y)
            return jax.block_until_ready(loss)
        return step


@workload("train_step", "one Adam training step (forward, backward, update of every parameter) "
          "of a 784-256-128-10 MLP, batch 128, float32")
def train_step(quick: bool) -> list[Case]:
    t = TrainStep(quick)
    shape = "-".join(map(str, t.sizes))
    return [Case("train_step", "train_step",
                 f"Adam step, MLP {shape}, batch {t.batch}, float32 (parameters updated in place)",
                 reference=t.reference, rtol=1e-4, atol=1e-5,
                 impls=impls(numpy=t.numpy, graphc=t.graphc, jax=t.jax, torch=t.torch),
                 targets=[])]
