"""Test helpers for exported libraries: a C driver program, generated from
an export's interface and written against its header's macros, that reads
every input from ``in<k>.bin`` (bytes numpy wrote), calls ``<name>_run`` a
given number of times, and writes every output to ``out<k>.bin`` and every
input back to ``in<k>.after.bin`` (a training step's parameters, updated in
place). It prints ``status <code> <message>``."""
from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim
from graphc.demo import build_model
from graphc.export import CompilerNotFoundError, find_cc


def cc_or_skip() -> list[str]:
    try:
        return find_cc()
    except CompilerNotFoundError as e:
        pytest.skip(f"no C compiler: {e}")


def driver_source(name: str, n_in: int, n_out: int) -> str:
    U = name.upper()
    ins = ", ".join(f"{U}_INPUT{k}_BYTES" for k in range(n_in)) or "0"
    outs = ", ".join(f"{U}_OUTPUT{k}_BYTES" for k in range(n_out))
    return f"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "{name}.h"

static void *slurp(const char *dir, const char *stem, int k, size_t n) {{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s%d.bin", dir, stem, k);
    FILE *f = fopen(path, "rb");
    void *p = malloc(n ? n : 1);
    if (!f || !p || fread(p, 1, n, f) != n) {{ fprintf(stderr, "cannot read %s\\n", path); exit(2); }}
    fclose(f);
    return p;
}}

static void spill(const char *dir, const char *stem, int k, const void *p, size_t n) {{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s%d.bin", dir, stem, k);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {{ fprintf(stderr, "cannot write %s\\n", path); exit(2); }}
    fclose(f);
}}

int main(int argc, char **argv) {{
    if (argc < 3) return 2;
    const char *dir = argv[1];
    int reps = atoi(argv[2]);
    size_t in_bytes[] = {{{ins}}}, out_bytes[] = {{{outs}}};
    const void *inputs[{max(n_in, 1)}];
    void *outputs[{n_out}];
    for (int k = 0; k < {U}_NUM_INPUTS; k++) inputs[k] = slurp(dir, "in", k, in_bytes[k]);
    for (int k = 0; k < {U}_NUM_OUTPUTS; k++) outputs[k] = calloc(1, out_bytes[k] + 1);
    if (argc > 3) {name}_set_num_threads(atoi(argv[3]));
    int32_t status = 0;
    for (int r = 0; r < reps && status == 0; r++) status = {name}_run(inputs, outputs);
    printf("status %d %s\\n", status, {name}_error_message(status));
    for (int k = 0; k < {U}_NUM_OUTPUTS; k++) spill(dir, "out", k, outputs[k], out_bytes[k]);
    for (int k = 0; k < {U}_NUM_INPUTS; k++) spill(dir, "in", k, inputs[k], in_bytes[k]);
    return 0;
}}
"""


def build_driver(exp, work, static: bool = False) -> str:
    """Compile and link the driver against the exported library; its path."""
    cc = cc_or_skip()
    iface = exp.interface
    src = os.path.join(work, "driver.c")
    with open(src, "w") as f:
        f.write(driver_source(iface.name, len(iface.inputs), len(iface.outputs)))
    exe = os.path.join(work, "driver")
    libdir = os.path.dirname(os.path.abspath(exp.library))
    if static:
        link = [exp.library, "-lpthread", "-lm"]
    else:
        link = [f"-L{libdir}", f"-l{iface.name}", f"-Wl,-rpath,{libdir}"]
    subprocess.run([*cc, "-std=c11", "-O2", "-Wall", "-Werror", f"-I{libdir}", "-o", exe, src,
                    *link], check=True, capture_output=True, text=True)
    return exe


def run_driver(exe: str, exp, work, inputs: list, reps: int = 1, threads: int | None = None):
    """Run the driver on ``inputs`` (numpy arrays, in the library's input
    order); return (status line, outputs, inputs after the calls)."""
    iface = exp.interface
    assert len(inputs) == len(iface.inputs)
    for k, (a, spec) in enumerate(zip(inputs, iface.inputs)):
        a = np.asarray(a)
        assert a.dtype == np.dtype(spec.dtype) and a.shape == spec.shape, spec
        with open(os.path.join(work, f"in{k}.bin"), "wb") as f:
            f.write(a.tobytes())
    cmd = [exe, str(work), str(reps)] + ([] if threads is None else [str(threads)])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr

    def read(stem, k, spec):
        data = open(os.path.join(work, f"{stem}{k}.bin"), "rb").read()
        return np.frombuffer(data, dtype=spec.dtype).reshape(spec.shape)
    outs = [read("out", k, s) for k, s in enumerate(iface.outputs)]
    after = [read("in", k, s) for k, s in enumerate(iface.inputs)]
    return r.stdout.strip(), outs, after


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# -- the graphs the tests export ------------------------------------------------------


def mlp_forward(batch=8):
    model = build_model()                  # the demo MLP, 2-64-64-3
    x = gc.placeholder((batch, 2), "float32", name="x")
    return gc.compile(model.eval()(x)), model


def mlp_step(batch=16):
    model = build_model()
    x = gc.placeholder((batch, 2), "float32", name="x")
    y = gc.placeholder((batch,), "int64", name="y")
    loss = nn.cross_entropy(model(x), y)
    return gc.compile(loss, inputs=[x, y], updates=optim.Adam(lr=0.01).updates(
        loss, model.parameters()))


def param_values(f):
    return [np.array(p.value) for p in f._native.params]


def threaded_matmul():
    a = gc.placeholder((256, 256), "float32", name="a")
    w = gc.parameter(np.random.default_rng(5).standard_normal((256, 256)).astype(np.float32),
                     name="w")
    return gc.compile(gc.tanh(a @ w) * 2.0, inputs=[a], threads=2)
