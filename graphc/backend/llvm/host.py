"""What graphc knows about the host CPU, in one place: its LLVM name, target
triple and feature string (for the target machine, jit.py), its vector width,
register count and FMA (for the GEMM's blocking and the vectorizer, gemm.py
and emit.py), and its data caches (gemm.py). Each is read once per process."""
from __future__ import annotations

import os

import llvmlite.binding as llvm

from ... import forksafe

_lock = forksafe.lock(globals(), "_lock", rank=5)   # innermost (see graphc/forksafe.py)
_cpu: dict = {}


# LLVM's vectorizers would turn a loop over a tensor's middle axis (the
# inner axes fully unrolled: a 64x32x4x4 slice, an im2col, batch norm's
# per-channel sums) into gathers and scatters, which on the AMD EPYC (Zen 4)
# and GDS-mitigated Intel machines here are slower than scalar code; with
# these tuning flags (LLVM's own for such CPUs) it keeps such loops scalar
# or vectorizes the contiguous axis. The LeNet training step: 4.4 -> 1.5 ms
# (f.profile(), one run beside a busy core; see docs/performance.md).
NO_GATHER = ",+prefer-no-gather,+prefer-no-scatter"


def cpu() -> dict:
    """``{"triple", "cpu", "features"}`` of the host, as LLVM names them
    (``features`` is the flattened ``+a,-b`` string a target machine takes)."""
    with _lock:
        if not _cpu:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            feats = llvm.get_host_cpu_features().flatten()
            triple = llvm.get_process_triple()
            if triple.startswith(("x86_64", "i686", "i386")):
                feats += NO_GATHER
            _cpu.update(triple=triple, cpu=llvm.get_host_cpu_name(), features=feats)
        return _cpu


def host_info() -> dict:
    """The host as ``python -m graphc info`` and the compile cache name it:
    triple, CPU, features and LLVM version."""
    c = cpu()
    return {"triple": c["triple"], "cpu": c["cpu"], "features": c["features"],
            "llvm": ".".join(map(str, llvm.llvm_version_info))}


def has_feature(name: str) -> bool:
    """Whether the host CPU has feature ``name`` (LLVM's spelling, e.g. "avx512f")."""
    return f"+{name}" in cpu()["features"].split(",")


def host_vector() -> tuple[int, int, bool]:
    """(widest useful vector bits, number of vector registers, has FMA) of this CPU."""
    try:
        c = cpu()
        feats = {f[1:]: f[0] == "+" for f in c["features"].split(",") if f}
    except Exception:          # features unknown on this platform: be conservative
        return 128, 16, False
    arch = c["triple"].split("-")[0]
    if arch in ("x86_64", "i386", "i686"):
        if feats.get("avx512f"):
            return 512, 32, bool(feats.get("fma", True))
        if feats.get("avx"):
            return 256, 16, bool(feats.get("fma"))
        return 128, 16, False
    if arch in ("aarch64", "arm64"):
        return 128, 32, True
    return 128, 16, False


def host_caches() -> dict:
    """Per-core data cache sizes in bytes by level, read from sysfs (Linux);
    defaults (32 KiB, 1 MiB, 8 MiB) where unknown."""
    out = {1: 32 << 10, 2: 1 << 20, 3: 8 << 20}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for d in sorted(os.listdir(base)):
            if not d.startswith("index"):
                continue

            def rd(f, d=d):
                with open(os.path.join(base, d, f)) as fh:
                    return fh.read().strip()
            if rd("type") not in ("Data", "Unified"):
                continue
            size = rd("size")
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1], 1)
            out[int(rd("level"))] = int(size.rstrip("KMG")) * mult
    except (OSError, ValueError):
        pass
    return out


def vector_width(fn) -> None:
    """Let the vectorizer use the host's widest vectors in llvmlite function
    ``fn`` (LLVM prefers 256-bit vectors on AVX-512 hosts by default; the math
    here is throughput-bound, and 512-bit vectors measured 1.3-1.45x faster on
    exp/log/tanh/sigmoid)."""
    if has_feature("avx512f"):
        set.add(fn.attributes, '"prefer-vector-width"="512"')   # llvmlite's add() rejects it


def clock_intrinsic() -> str:
    """The LLVM intrinsic that reads a fast counter from user code, for the
    kernel profiler: the time-stamp counter on x86-64 (``rdtsc``), the
    generic timer on AArch64 (``llvm.readcyclecounter`` reads PMCCNTR there,
    which traps unless the kernel enables it)."""
    arch = cpu()["triple"].split("-")[0]
    if arch in ("x86_64", "i686", "i386"):
        return "llvm.readcyclecounter"
    if arch in ("aarch64", "arm64"):
        return "llvm.readsteadycounter"
    raise NotImplementedError(f"profile: no cycle counter known for {arch} hosts")
