"""Compile one graph's module on two cores: half its kernels in this process,
half in a worker process (worker.py).

llvmlite serializes every call into LLVM with one global lock, so a second
thread would only wait; a second *process* runs LLVM alongside. When the
module is large enough to pay (:data:`SHARD_MIN_BYTES` of IR), it is split
at function level (shard.py: the entry and half the kernels, by IR size, stay
here; the other half goes to the worker), both halves are optimized and
turned into object code at once, and the two object files are loaded into
one engine (``jit.JitModule``). Smaller modules compile here, whole.

The worker is one persistent child process (``python .../worker.py``, started
with ``subprocess``: fork-and-exec with no Python code between, safe in a
process with threads — unlike a bare ``os.fork()`` per compile, which would
copy every other thread's half-finished state, LLVM's included). It is
started in the background when a compile of a graph big enough to need it
begins (:func:`prestart`, ahead of the passes and emission, so its startup
overlaps them), serves one request at a time, and exits when its stdin
closes, i.e. with this process. Nothing waits on it without a deadline: if it
cannot start, dies, replies garbage or is late (:func:`_deadline`), it is
killed and that shard is compiled here — the same code, only later. After
:data:`MAX_FAILURES` failures a process stops using workers. A second thread
compiling while the worker is busy compiles its module here, whole.
Only while a core is idle (:func:`idle_core`, the tasks runnable now): on a
busy machine the second process would only compete with the others.
``GRAPHC_LLVM_WORKER=0`` disables the worker, ``=always`` skips the load test; ``GRAPHC_SHARD_MIN_BYTES``
sets the threshold.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time

from ... import forksafe
from . import jit, shard
from .worker import READY, REPLY, REQUEST, write_message

# IR below this compiles whole, here (see docs/performance.md); the
# environment can lower it (tests: shard every module)
SHARD_MIN_BYTES = int(os.environ.get("GRAPHC_SHARD_MIN_BYTES", "40000"))
PRESTART_MIN_NODES = 150     # graphs from this size start the worker when their compile starts
MAX_FAILURES = 3
# graphc's opt_level 3 runs LLVM's O2 pass pipeline (with O3 code generation):
# the same run time on every benchmark workload (A/B of one IR, interleaved
# calls: mlp_step, adam10/40, elemwise) for 15-25% less LLVM time
PIPELINE = {3: {"speed_level": 2}}
_lock = forksafe.lock(globals(), "_lock", rank=1.5)   # (see graphc/forksafe.py)
_state = {"worker": None, "failures": 0}
# compiles so far, and the CPU seconds of the last sharded one's two halves
# (tests, benchmarks)
stats = {"sharded": 0, "whole": 0, "fallbacks": 0, "last_cpu": (0.0, 0.0)}
_on_sent = None              # test hook: called with the worker after a request is sent


def idle_core() -> bool:
    """Whether a second core is likely free: fewer tasks runnable right now
    besides this one than CPUs minus one (Linux's ``/proc/loadavg``; the
    1-minute load average elsewhere, which also counts this process's own
    recent work); ``GRAPHC_LLVM_WORKER=always``: assume so. On a busy
    machine a worker only adds its work (splitting costs about 5% more LLVM
    time in all) to everyone's."""
    if os.environ.get("GRAPHC_LLVM_WORKER") == "always":
        return True
    try:
        with open("/proc/loadavg") as fh:
            runnable = int(fh.read().split()[3].split("/")[0])
        return runnable - 1 < _cpus() - 1
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0] < _cpus() - 1 + 0.5
    except OSError:
        return True


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def enabled() -> bool:
    if os.environ.get("GRAPHC_LLVM_WORKER", "1") == "0" or _state["failures"] >= MAX_FAILURES:
        return False
    return _cpus() >= 2 and bool(sys.executable)


class Worker:
    """One worker process and the pipes to it."""

    def __init__(self):
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
        # -P: the script's directory (graphc's modules) does not shadow the stdlib
        flags = ["-P"] if sys.version_info >= (3, 11) else []
        self.proc = subprocess.Popen([sys.executable, *flags, path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     close_fds=True)
        self.owner = os.getpid()
        self.pid = self.proc.pid
        self.buf = bytearray()           # bytes read from its stdout, not yet used
        self.is_ready = False

    def ready(self, timeout: float) -> bool:
        """Whether it has loaded LLVM (its first message), waiting at most
        ``timeout`` seconds for it."""
        if not self.is_ready:
            try:
                self._need(len(READY), time.monotonic() + timeout)
            except WorkerError:
                return False
            if bytes(self.buf[:len(READY)]) != READY:     # not our worker.py
                self.kill()
                return False
            del self.buf[:len(READY)]
            self.is_ready = True
        return True

    def _need(self, n: int, deadline: float) -> bytes:
        """The first ``n`` bytes of its output (kept in ``buf``)."""
        fd = self.proc.stdout.fileno()
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError("no reply in time")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, max(n - len(self.buf), 1 << 16))
                if not chunk:
                    raise WorkerError("it exited")
                self.buf.extend(chunk)
        return bytes(self.buf[:n])

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.proc.poll() is None

    def send(self, text: str, opt: int, tuning: dict | None) -> threading.Thread:
        """Write the request from a thread (the pipe blocks until the worker
        reads, and it may still be starting); returns that thread."""
        data = text.encode()
        header = dict(jit.target_params(), opt=opt, tuning=tuning or {}, ir=len(data))
        self.send_error = None

        def write():
            try:
                write_message(self.proc.stdin, REQUEST, header, data)
            except (OSError, ValueError) as e:       # it died (a broken pipe)
                self.send_error = e
        t = threading.Thread(target=write, name="graphc-llvm-send", daemon=True)
        t.start()
        return t

    def receive(self, deadline: float) -> tuple[bytes, str]:
        """The reply's (object code, optimized IR); raise WorkerError if it
        does not come whole by ``deadline`` (time.monotonic())."""
        if not self.ready(deadline - time.monotonic()):
            raise WorkerError("it did not start in time")

        def need(n):
            return self._need(n, deadline)
        head = need(8)
        n = int.from_bytes(head[4:8], "little")
        if head[:4] != REPLY or n > 1 << 20:
            raise WorkerError("a garbled reply")
        try:
            header = json.loads(need(8 + n)[8:])
            if not header.get("ok"):
                raise WorkerError(f"it failed: {header.get('error')}")
            n_obj, n_ir = int(header["obj"]), int(header["ir"])
            self.cpu = float(header.get("cpu", 0.0))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise WorkerError("a garbled reply") from None
        total = 8 + n + n_obj + n_ir
        body = need(total)[8 + n:]
        if len(self.buf) != total:
            raise WorkerError("a garbled reply (extra bytes)")
        self.buf.clear()
        return body[:n_obj], body[n_obj:].decode()

    def close(self) -> None:
        """Close its stdin (it exits), then reap it."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


class WorkerError(Exception):
    pass


def _worker():
    """The live worker, started if needed; None if there can be none.
    Call with ``_lock`` held."""
    w = _state["worker"]
    if w is not None and w.alive():
        return w
    if w is not None and w.owner == os.getpid():     # it died since last use
        w.kill()
        _state["failures"] += 1
    _state["worker"] = None
    if not enabled():
        return None
    try:
        _state["worker"] = Worker()
    except OSError:
        _state["failures"] = MAX_FAILURES              # cannot start one here: stop trying
    return _state["worker"]


def prestart(n_nodes: int) -> None:
    """Start the worker now (in the background) if a graph of ``n_nodes``
    nodes will probably need it, so that it is ready when the IR is."""
    if n_nodes < PRESTART_MIN_NODES or not enabled() or not idle_core():
        return
    if _lock.acquire(blocking=False):
        try:
            _worker()
        finally:
            _lock.release()


def _deadline(local_seconds: float) -> float:
    """How long after its own shard the parent waits for the worker's: the
    two shards are of about the same size, so a healthy worker is done at
    about the same time; five times as long (and at least 10 s) means it
    is stuck or starved, and compiling the shard here is then no slower."""
    return time.monotonic() + max(10.0, 5 * local_seconds)


def compile_module(ir_text: str, entry: str, opt: int = 3,
                   tuning: dict | None = None) -> jit.JitModule:
    """Compile a graph's module: on two cores when it is large enough and a
    worker is at hand, else here, whole."""
    if tuning is None:
        tuning = PIPELINE.get(opt)
    if len(ir_text) < SHARD_MIN_BYTES or not enabled() or not idle_core() or \
            not _lock.acquire(blocking=False):
        stats["whole"] += 1
        return jit.JitModule.compile(ir_text, entry, opt, tuning)
    try:
        parts = shard.split(ir_text, 2)
        w = _worker() if parts is not None else None
        # a worker still loading LLVM (it was not started ahead, see prestart)
        # is waited for briefly, in proportion to the work (0.3 s for 300 KB)
        if w is not None and not w.ready(min(0.5, len(ir_text) / 1e6)):
            w = None
        if w is None:
            stats["whole"] += 1
            return jit.JitModule.compile(ir_text, entry, opt, tuning)
        (local, remote), _ = parts
        sender = w.send(remote, opt, tuning)
        if _on_sent is not None:
            _on_sent(w)
        t0, c0 = time.monotonic(), time.thread_time()
        try:
            obj0, ir0 = jit.compile_object(local, opt, tuning)
            c0 = time.thread_time() - c0
        except BaseException:     # (bad IR): the worker's reply must not answer the next request
            w.kill()
            _state["worker"] = None
            raise
        try:
            obj1, ir1 = w.receive(_deadline(time.monotonic() - t0))
            stats["last_cpu"] = (c0, w.cpu)
            sender.join(timeout=1.0)
            if w.send_error is not None or sender.is_alive():
                raise WorkerError(f"the request was not sent ({w.send_error})")
        except WorkerError:
            w.kill()
            _state["worker"] = None
            _state["failures"] += 1
            stats["fallbacks"] += 1
            obj1, ir1 = jit.compile_object(remote, opt, tuning)
        stats["sharded"] += 1
        return jit.JitModule([obj0, obj1], entry, [ir0, ir1], opt)
    finally:
        _lock.release()


def _forget_in_child() -> None:
    """A forked child must not talk to its parent's worker (the pipes are
    shared): drop it, closing only the child's copies of the pipes."""
    w = _state["worker"]
    _state["worker"] = None
    if w is not None:
        for f in (w.proc.stdin, w.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


def shutdown() -> None:
    """Stop the worker (at exit; tests)."""
    w = _state["worker"]
    _state["worker"] = None
    if w is not None and w.owner == os.getpid():
        w.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
atexit.register(shutdown)
