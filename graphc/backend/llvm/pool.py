"""The runtime's thread pool: ``graphc_rt_parallel`` and its workers, emitted
as LLVM IR (registered as rtlib's "threads" component; see rtlib.py for the
runtime library and docs/architecture.md for how a threaded graph uses it)."""
from __future__ import annotations

import platform

from llvmlite import ir

from .loops import for_range, if_then
from .rtemit import VOID, _decl, indirect_call
from .scalar import I32, I64, PTR

SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "arm64": 98}.get(platform.machine(), 202)
FUTEX_WAIT, FUTEX_WAKE = 128, 129          # the _PRIVATE variants
SPIN_CYCLES = 60_000           # spin about 25 us before sleeping on the futex


def _pause(b: ir.IRBuilder):
    """A spin-wait hint to the CPU (x86 ``pause``, arm ``yield``)."""
    arch = platform.machine()
    m = b.module
    if arch in ("x86_64", "AMD64", "i686"):
        b.call(_decl(m, "llvm.x86.sse2.pause", VOID, []), [])
    elif arch in ("aarch64", "arm64"):
        b.call(_decl(m, "llvm.aarch64.hint", VOID, [I32]), [ir.Constant(I32, 1)])


def _futex(m, b, addr, op, val):
    sc = _decl(m, "syscall", I64, [I64], var_arg=True)
    b.call(sc, [ir.Constant(I64, SYS_FUTEX), addr, ir.Constant(I32, op), val,
                ir.Constant(PTR, None), ir.Constant(PTR, None), ir.Constant(I32, 0)])


def _spin_then_sleep(m, b, fn, addr, ready, waiters, name):
    """Wait until ``ready(current value of *addr)``: spin (about SPIN_CYCLES),
    then sleep on the futex at ``addr``, counted in ``*waiters`` so that a
    waker makes the system call only when someone sleeps (the count is
    raised before the value is checked again, and the waker changes the
    value before reading the count: one of the two sees the other)."""
    clock = _decl(m, "llvm.readcyclecounter", I64, [])
    t0 = b.call(clock, [])
    head = fn.append_basic_block(f"{name}.head")
    spin = fn.append_basic_block(f"{name}.spin")
    sleep = fn.append_basic_block(f"{name}.sleep")
    nap = fn.append_basic_block(f"{name}.nap")
    done = fn.append_basic_block(f"{name}.done")
    b.branch(head)
    b.position_at_end(head)
    cur = b.load_atomic(addr, "seq_cst", 4, typ=I32)
    b.cbranch(ready(cur), done, spin)
    b.position_at_end(spin)
    _pause(b)
    waited = b.sub(b.call(clock, []), t0)
    b.cbranch(b.icmp_unsigned("<", waited, ir.Constant(I64, SPIN_CYCLES)), head, sleep)
    b.position_at_end(sleep)
    b.atomic_rmw("add", waiters, ir.Constant(I32, 1), "seq_cst")
    again = b.load_atomic(addr, "seq_cst", 4, typ=I32)
    after = fn.append_basic_block(f"{name}.after")
    b.cbranch(ready(again), after, nap)
    b.position_at_end(nap)
    _futex(m, b, addr, FUTEX_WAIT, again)
    b.branch(after)
    b.position_at_end(after)
    b.atomic_rmw("sub", waiters, ir.Constant(I32, 1), "seq_cst")
    b.branch(head)
    b.position_at_end(done)


def _wait_changed(m, b, fn, addr, value, waiters, name):
    """Wait while ``*addr == value``."""
    _spin_then_sleep(m, b, fn, addr, lambda v: b.icmp_signed("!=", v, value), waiters, name)


def _wait_at_least(m, b, fn, addr, target, waiters, name):
    """Wait until ``*addr >= target``."""
    _spin_then_sleep(m, b, fn, addr, lambda v: b.icmp_signed(">=", v, target), waiters, name)


STATS_T = ir.LiteralStructType([I32, I64])     # the caller's tasks, cycles in them
STATE_T = ir.LiteralStructType([I32, I32])     # per job site: calls left to run alone, backoff
SOLO_FIRST, SOLO_MAX = 4, 64                   # calls run alone after threads did not pay
PAID = 0.9                                     # threads paid: job time < PAID x the estimate alone


def _judge(b, elapsed, st, total, solo_p, backoff_p):
    """Did threads pay for this job? The caller ran ``mine`` of the ``total``
    tasks in ``busy`` cycles, so alone the job would have taken about
    ``busy * total / mine``. If it took more than PAID of that (the workers
    woke too late for a small job, or one was descheduled holding a task),
    the next ``backoff`` calls at this job site run alone on the caller,
    ``backoff`` doubling (SOLO_FIRST .. SOLO_MAX) while threads keep not
    paying and halving while they do. Chunk boundaries are the same either
    way, so results are bitwise the same."""
    mine = b.load(b.gep(st, [ir.Constant(I32, 0), ir.Constant(I32, 0)], source_etype=STATS_T),
                  typ=I32)
    busy = b.load(b.gep(st, [ir.Constant(I32, 0), ir.Constant(I32, 1)], source_etype=STATS_T),
                  typ=I64)
    fn = b.function
    lost, paid, end = (fn.append_basic_block(x) for x in ("job.lost", "job.paid", "job.end"))
    # elapsed * mine > PAID * busy * total, in doubles (no overflow)
    f64 = ir.DoubleType()
    lhs = b.fmul(b.uitofp(elapsed, f64), b.uitofp(mine, f64))
    rhs = b.fmul(ir.Constant(f64, PAID), b.fmul(b.uitofp(busy, f64), b.uitofp(total, f64)))
    b.cbranch(b.and_(b.icmp_signed(">", mine, ir.Constant(I32, 0)), b.fcmp_ordered(">", lhs, rhs)),
              lost, paid)
    b.position_at_end(lost)
    old = b.load_atomic(backoff_p, "monotonic", 4, typ=I32)
    twice = b.shl(old, ir.Constant(I32, 1))
    nb = b.select(b.icmp_signed("<", old, ir.Constant(I32, SOLO_FIRST)), ir.Constant(I32, SOLO_FIRST),
                  b.select(b.icmp_signed(">", twice, ir.Constant(I32, SOLO_MAX)),
                           ir.Constant(I32, SOLO_MAX), twice))
    b.atomic_rmw("xchg", backoff_p, nb, "monotonic")
    b.atomic_rmw("xchg", solo_p, nb, "monotonic")
    b.branch(end)
    b.position_at_end(paid)
    old = b.load_atomic(backoff_p, "monotonic", 4, typ=I32)
    b.atomic_rmw("xchg", backoff_p, b.lshr(old, ir.Constant(I32, 1)), "monotonic")
    b.branch(end)
    b.position_at_end(end)


def emit_threads(m: ir.Module):
    """The thread pool (see the module docstring, and docs/architecture.md).

    A job is a sequence of phases; phase ``p`` is ``widths[p]`` tasks that
    may run at once, and runs after every task of phase ``p-1`` is done. The
    tasks are numbered through the phases; a thread (the caller or a worker)
    claims the next unclaimed one with a compare-and-swap on ``pool.claim``
    (the job's generation in the high 32 bits, the next task in the low 32),
    waits until the previous phases are done (``pool.done``, the count of
    finished tasks), runs it, and claims again until none is left. So the
    caller never waits for a task that no thread has started: a worker that
    is not running (descheduled, still asleep) simply claims nothing, and
    the caller runs the tasks itself. Waits spin briefly, then sleep on a
    futex; a wake-up is a system call only when someone sleeps
    (``pool.sleepers``, ``pool.dwait``).

    A job's fields are written while ``pool.claim`` is closed (its low word
    all ones) and read only by a thread that has claimed one of its tasks,
    which the job cannot outlive: a thread that wakes late, after the job
    ended, fails its compare-and-swap and touches nothing of it."""
    def glob(name, t):
        g = ir.GlobalVariable(m, t, name)
        g.linkage = "internal"
        g.initializer = ir.Constant(t, None)
        return g
    lock, gen, sleepers = glob("pool.lock", I32), glob("pool.gen", I32), glob("pool.sleepers", I32)
    started, pid_g = glob("pool.started", I32), glob("pool.pid", I32)
    claim, total_g, n_g = glob("pool.claim", I64), glob("pool.total", I32), glob("pool.n", I32)
    done, dwait = glob("pool.done", I32), glob("pool.dwait", I32)
    # (pointers kept as i64: llvmlite's atomic stores want typed pointees)
    fn_g, ctx_g, widths_g = glob("pool.fn", I64), glob("pool.ctx", I64), glob("pool.widths", I64)
    task_t = ir.FunctionType(VOID, [PTR, I32, I32, I32])      # (ctx, phase, chunk, slot)
    intmax = ir.Constant(I32, 0x7FFFFFFF)
    c0, c1 = ir.Constant(I32, 0), ir.Constant(I32, 1)

    def at_load(b, g, t):
        if t == PTR:
            return b.inttoptr(b.load_atomic(g, "seq_cst", 8, typ=I64), PTR)
        return b.load_atomic(g, "seq_cst", 8 if t == I64 else 4, typ=t)

    def at_store(b, v, g):
        if v.type == PTR:
            v = b.ptrtoint(v, I64)
        b.store_atomic(v, g, "seq_cst", 8 if v.type == I64 else 4)

    # work(slot): claim and run tasks until none is left
    # (stats: null, or the caller's {i32 tasks run, i64 cycles in them})
    work = ir.Function(m, ir.FunctionType(VOID, [I32, PTR]), "graphc_rt_work")
    work.linkage = "internal"
    slot, stats = work.args
    b = ir.IRBuilder(work.append_basic_block("entry"))
    clock = _decl(m, "llvm.readcyclecounter", I64, [])
    counting = b.icmp_unsigned("!=", stats, ir.Constant(PTR, None))
    cur_gen = b.alloca(I64)
    ph, pstart, pend = b.alloca(I32), b.alloca(I32), b.alloca(I32)
    b.store(ir.Constant(I64, -1), cur_gen)
    loop = work.append_basic_block("loop")
    try_claim = work.append_basic_block("try_claim")
    cas = work.append_basic_block("cas")
    claimed = work.append_basic_block("claimed")
    out = work.append_basic_block("out")
    b.branch(loop)
    b.position_at_end(loop)
    w = at_load(b, claim, I64)
    idx = b.trunc(w, I32)
    total = at_load(b, total_g, I32)
    b.cbranch(b.icmp_unsigned("<", idx, total), try_claim, out)
    b.position_at_end(try_claim)
    b.cbranch(b.icmp_signed("<", slot, at_load(b, n_g, I32)), cas, out)
    b.position_at_end(cas)
    res = b.cmpxchg(claim, w, b.add(w, ir.Constant(I64, 1)), "seq_cst", "seq_cst")
    b.cbranch(b.extract_value(res, 1), claimed, loop)
    b.position_at_end(claimed)           # task idx is ours: the job lives until it is done
    fnp = at_load(b, fn_g, PTR)
    ctx = at_load(b, ctx_g, PTR)
    widths = at_load(b, widths_g, PTR)
    g_w = b.lshr(w, ir.Constant(I64, 32))
    reset = work.append_basic_block("reset")
    seek = work.append_basic_block("seek")
    b.cbranch(b.icmp_unsigned("!=", g_w, b.load(cur_gen, typ=I64)), reset, seek)
    b.position_at_end(reset)             # a new job: its phases from the first
    b.store(g_w, cur_gen)
    b.store(c0, ph)
    b.store(c0, pstart)
    b.store(b.load(widths, typ=I32), pend)
    b.branch(seek)
    b.position_at_end(seek)              # the phase of task idx (tasks are claimed in order)
    adv = work.append_basic_block("advance")
    found = work.append_basic_block("found")
    b.cbranch(b.icmp_unsigned(">=", idx, b.load(pend, typ=I32)), adv, found)
    b.position_at_end(adv)
    e = b.load(pend, typ=I32)
    b.store(e, pstart)
    p1 = b.add(b.load(ph, typ=I32), c1)
    b.store(p1, ph)
    b.store(b.add(e, b.load(b.gep(widths, [p1], source_etype=I32), typ=I32)), pend)
    b.branch(seek)
    b.position_at_end(found)
    _wait_at_least(m, b, work, done, b.load(pstart, typ=I32), dwait, "prev")
    p = b.load(ph, typ=I32)
    t_task = b.call(clock, [])
    indirect_call(b, task_t, fnp, [ctx, p, b.sub(idx, b.load(pstart, typ=I32)), slot])
    with if_then(b, counting, "count"):
        n_run = b.gep(stats, [c0, c0], source_etype=STATS_T)
        b.store(b.add(b.load(n_run, typ=I32), c1), n_run)
        busy = b.gep(stats, [c0, c1], source_etype=STATS_T)
        b.store(b.add(b.load(busy, typ=I64), b.sub(b.call(clock, []), t_task)), busy)
    d = b.add(b.atomic_rmw("add", done, c1, "seq_cst"), c1)
    wake = work.append_basic_block("wake")
    b.cbranch(b.and_(b.icmp_signed("==", d, b.load(pend, typ=I32)),
                     b.icmp_signed(">", at_load(b, dwait, I32), c0)), wake, loop)
    b.position_at_end(wake)              # the phase is complete and someone sleeps on it
    _futex(m, b, done, FUTEX_WAKE, intmax)
    b.branch(loop)
    b.position_at_end(out)
    b.ret_void()

    # worker(arg): arg = slot | (generation seen at creation << 32)
    wk = ir.Function(m, ir.FunctionType(PTR, [PTR]), "graphc_rt_worker")
    wk.linkage = "internal"
    b = ir.IRBuilder(wk.append_basic_block("entry"))
    packed = b.ptrtoint(wk.args[0], I64)
    me_slot = b.trunc(packed, I32)
    seen = b.alloca(I32)
    b.store(b.trunc(b.lshr(packed, ir.Constant(I64, 32)), I32), seen)
    top = wk.append_basic_block("top")
    b.branch(top)
    b.position_at_end(top)
    _wait_changed(m, b, wk, gen, b.load(seen, typ=I32), sleepers, "wjob")
    b.store(at_load(b, gen, I32), seen)
    b.call(work, [me_slot, ir.Constant(PTR, None)])
    b.branch(top)

    # parallel(task, ctx, widths, phases, n)
    p = ir.Function(m, ir.FunctionType(VOID, [PTR, PTR, PTR, I32, I32, PTR]),
                    "graphc_rt_parallel")
    fnp, ctx, widths, nph, n, state = p.args
    b = ir.IRBuilder(p.append_basic_block("entry"))
    solo_p = b.gep(state, [c0, c0], source_etype=STATE_T)
    backoff_p = b.gep(state, [c0, c1], source_etype=STATE_T)
    # total tasks
    tot = b.alloca(I32)
    b.store(c0, tot)
    with for_range(b, b.zext(nph, I64), "sum") as k:
        b.store(b.add(b.load(tot, typ=I32), b.load(b.gep(widths, [k], source_etype=I32),
                                                    typ=I32)), tot)
    total = b.load(tot, typ=I32)
    alone = p.append_basic_block("alone")
    try_lock = p.append_basic_block("try_lock")
    threads_ok = p.append_basic_block("threads_ok")
    solo = p.append_basic_block("solo")
    b.cbranch(b.icmp_signed("<=", n, c1), alone, threads_ok)
    b.position_at_end(threads_ok)          # threads lately did not pay: this call runs alone
    left = b.load_atomic(solo_p, "monotonic", 4, typ=I32)
    b.cbranch(b.icmp_signed(">", left, c0), solo, try_lock)
    b.position_at_end(solo)
    b.atomic_rmw("xchg", solo_p, b.sub(left, c1), "monotonic")
    b.branch(alone)
    b.position_at_end(try_lock)
    getpid = _decl(m, "getpid", I32, [])
    me = b.call(getpid, [])
    forked = p.append_basic_block("forked")
    locking = p.append_basic_block("locking")
    b.cbranch(b.icmp_signed("!=", me, b.load(pid_g, typ=I32)), forked, locking)
    b.position_at_end(forked)          # a new process (or the first call): no workers yet
    b.store(c0, started)
    b.store(c0, lock)
    b.store(c0, sleepers)
    b.store(c0, dwait)
    b.store(me, pid_g)
    b.branch(locking)
    b.position_at_end(locking)
    res = b.cmpxchg(lock, c0, c1, "acquire", "monotonic")
    spawn = p.append_basic_block("spawn")
    b.cbranch(b.extract_value(res, 1), spawn, alone)
    # start workers up to n-1
    b.position_at_end(spawn)
    create = _decl(m, "pthread_create", I32, [PTR, PTR, PTR, PTR])
    handle = b.alloca(I64)
    sloop = p.append_basic_block("sloop")
    sbody = p.append_basic_block("sbody")
    sok = p.append_basic_block("sok")
    sdone = p.append_basic_block("sdone")
    b.branch(sloop)
    b.position_at_end(sloop)
    k = b.load(started, typ=I32)
    b.cbranch(b.icmp_signed("<", k, b.sub(n, c1)), sbody, sdone)
    b.position_at_end(sbody)
    g0 = at_load(b, gen, I32)
    arg = b.or_(b.zext(b.add(k, c1), I64), b.shl(b.zext(g0, I64), ir.Constant(I64, 32)))
    rc = b.call(create, [handle, ir.Constant(PTR, None), wk, b.inttoptr(arg, PTR)])
    b.cbranch(b.icmp_signed("==", rc, c0), sok, sdone)
    b.position_at_end(sok)
    b.store(b.add(k, c1), started)
    b.branch(sloop)
    b.position_at_end(sdone)
    have = b.add(b.load(started, typ=I32), c1)
    nn = b.select(b.icmp_signed("<", have, n), have, n)
    go = p.append_basic_block("go")
    unlock_alone = p.append_basic_block("unlock_alone")
    b.cbranch(b.icmp_signed("<=", nn, c1), unlock_alone, go)
    b.position_at_end(unlock_alone)
    b.atomic_rmw("xchg", lock, c0, "release")
    b.branch(alone)
    b.position_at_end(go)
    g = b.add(at_load(b, gen, I32), c1)
    hi = b.shl(b.zext(g, I64), ir.Constant(I64, 32))
    at_store(b, b.or_(hi, ir.Constant(I64, 0xFFFFFFFF)), claim)      # closed
    at_store(b, fnp, fn_g)
    at_store(b, ctx, ctx_g)
    at_store(b, widths, widths_g)
    at_store(b, total, total_g)
    at_store(b, nn, n_g)
    at_store(b, c0, done)
    at_store(b, hi, claim)                                           # open: task 0 next
    at_store(b, g, gen)
    wake = p.append_basic_block("wake")
    run = p.append_basic_block("run")
    b.cbranch(b.icmp_signed(">", at_load(b, sleepers, I32), c0), wake, run)
    b.position_at_end(wake)
    _futex(m, b, gen, FUTEX_WAKE, intmax)
    b.branch(run)
    b.position_at_end(run)
    st = b.alloca(STATS_T)
    b.store(ir.Constant(STATS_T, None), st)
    t0 = b.call(clock, [])
    b.call(work, [c0, st])
    _wait_at_least(m, b, p, done, total, dwait, "fin")
    b.atomic_rmw("xchg", lock, c0, "release")
    _judge(b, b.sub(b.call(clock, []), t0), st, total, solo_p, backoff_p)
    b.ret_void()
    # alone: every task in order on this thread
    b.position_at_end(alone)
    with for_range(b, b.zext(nph, I64), "aph") as k:
        wk_n = b.load(b.gep(widths, [k], source_etype=I32), typ=I32)
        with for_range(b, b.zext(wk_n, I64), "ach") as c:
            indirect_call(b, task_t, fnp, [ctx, b.trunc(k, I32), b.trunc(c, I32), c0])
    b.ret_void()
