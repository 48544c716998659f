"""Output: the text table, the JSON file and the PNG chart."""
from __future__ import annotations

import json
import math

from .targets import fmt_time


def _ratio(r) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _check_text(r: dict) -> str:
    st = r["status"]
    if st == "ok":
        return "ok"
    if st == "mismatch":
        return "MISMATCH"
    return f"{st}: {r.get('note', '')}"


def _rows_table(header: list, rows: list) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    right = [False] + [True] * (len(header) - 2) + [False]
    def fmt(row):
        cells = [str(c).rjust(w) if rj else str(c).ljust(w) for c, w, rj in zip(row, widths, right)]
        return "  " + "  ".join(cells).rstrip()
    return [fmt(header), "  " + "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]


def _shown(impls: dict):
    """The rows of the table: all but the implementations left out by --impls."""
    return [(n, r) for n, r in impls.items() if not r.get("note", "").startswith("not selected")]


def case_lines(c: dict) -> list[str]:
    lines = [f"{c['case']}: {c['description']}"]
    impls = c["impls"]
    if c["kind"] == "compile":
        header = ["impl", "first (cold)", "fresh median", "fresh min", "n", "vs graphc", "check"]
        rows = []
        for name, r in _shown(impls):
            if r["status"] in ("ok", "mismatch"):
                rows.append([name, fmt_time(r.get("first_s")), fmt_time(r.get("median_s")),
                             fmt_time(r.get("min_s")), r.get("samples", 0),
                             _ratio(r.get("vs_graphc")), _check_text(r)])
            else:
                rows.append([name, "", "", "", "", "", _check_text(r)])
    else:
        gfl = c.get("flops") is not None
        header = ["impl", "median", "IQR", "min", "cpu med", "cpu/wall"] + \
                 (["GFLOP/s"] if gfl else []) + ["vs graphc", "check"]
        rows = []
        for name, r in _shown(impls):
            if "median_s" in r:
                iqr = fmt_time(r["q3_s"] - r["q1_s"])
                cw = r.get("cpu_per_wall")
                row = [name, fmt_time(r["median_s"]), iqr, fmt_time(r["min_s"]),
                       fmt_time(r.get("cpu_median_s")), "-" if cw is None else f"{cw:.2f}"]
                if gfl:
                    row.append(f"{r['gflops']:.1f}")
                rows.append(row + [_ratio(r.get("vs_graphc")), _check_text(r)])
            else:
                rows.append([name, "", "", "", "", ""] + ([""] if gfl else []) + ["", _check_text(r)])
    lines += _rows_table(header, rows)
    for t in c["targets"]:
        lines.append("  target: " + target_text(t))
    return lines


def target_text(t: dict) -> str:
    if t["met"] is None:
        return f"{t['target']}: n/a ({t.get('why', '')})"
    return f"{t['target']}: {t['measured_text']} -> {'met' if t['met'] else 'NOT MET'}"


def format_report(results: dict) -> str:
    m = results["meta"]
    h, v = m["host"], m["versions"]
    out = [f"graphc bench  {m['date']}  threads={m['threads']}"
           + ("  (--quick sizes)" if m["options"]["quick"] else ""),
           f"host: {h['cpu']} ({h['llvm_cpu']}), {h['cpus']} CPU(s), {h['system']} {h['machine']}",
           "versions: " + ", ".join(f"{k} {val}" for k, val in v.items())]
    la, lb = m.get("loadavg_start"), m.get("loadavg_end")
    if la and lb:
        busy = la[0] > 0.75 * h["cpus"]
        out.append(f"load average (1 min) at start {la[0]:.2f}, at end {lb[0]:.2f}, on "
                   f"{h['cpus']} CPU(s)" + ("  -- the machine was busy: timings are noisy"
                                            if busy else ""))
        if busy and m["threads"] > 1:
            out.append("  (with more runnable threads than CPUs, multi-threaded libraries stall "
                       "at their barriers: compare 'min' with 'median')")
    for k, note in m["thread_notes"].items():
        out.append(f"threads/{k}: {note}")
    for k, why in m["missing_peers"].items():
        out.append(f"peer {k}: {why} (its rows are skipped)")
    cpu = m["options"].get("clock") == "cpu"
    out.append("times are per call, medians of interleaved samples; 'cpu med': process CPU time "
               "per call (all threads)")
    out.append("'vs graphc' = time / graphc's time (> 1: graphc is faster), from the "
               + ("CPU-time medians (--clock cpu)" if cpu else "wall-clock medians")
               + ("; GFLOP/s from CPU time" if cpu else ""))
    for c in results["cases"]:
        out.append("")
        out += case_lines(c)
    out.append("")
    out.append("targets:" + ("  (--quick sizes: not comparable with the targets)"
                             if m["options"]["quick"] else ""))
    for c in results["cases"]:
        for t in c["targets"]:
            out.append(f"  {c['case']:12s} {target_text(t)}")
    if results["mismatches"]:
        out.append("")
        out.append(f"!!! {len(results['mismatches'])} MISMATCH(ES) -- excluded from the ratios:")
        out += ["  " + msg for msg in results["mismatches"]]
    out.append(f"(total {m['seconds']:.1f} s)")
    return "\n".join(out)


def _clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(x) for k, x in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(x) for x in o]
    return o


def write_json(results: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(_clean(results), f, indent=1, default=float)
        f.write("\n")


def _unit(t: float) -> tuple[str, float]:
    if t >= 1.0:
        return "s", 1.0
    if t >= 1e-3:
        return "ms", 1e3
    return "us", 1e6


def write_png(results: dict, path: str) -> str | None:
    """One panel per case: median time per implementation (IQR whiskers),
    log scale. Returns None, or why no chart was written."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "matplotlib is not installed: no chart"
    cases = results["cases"]
    if not cases:
        return "no cases: no chart"
    ncol = 2 if len(cases) > 1 else 1
    nrow = math.ceil(len(cases) / ncol)
    fig = Figure(figsize=(6.5 * ncol, 2.6 * nrow + 0.6))
    FigureCanvasAgg(fig)
    m = results["meta"]
    fig.suptitle(f"graphc bench, threads={m['threads']}, {m['host']['cpu']}, {m['date'][:10]}",
                 fontsize=10)
    for k, c in enumerate(cases):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        names, vals, lo, hi, colors = [], [], [], [], []
        key = "first_s" if c["kind"] == "compile" else "median_s"
        for name, r in c["impls"].items():
            t = r.get(key)
            if t is None:
                continue
            names.append(name + (" (MISMATCH)" if r["status"] == "mismatch" else ""))
            vals.append(t)
            q1, q3 = r.get("q1_s", t), r.get("q3_s", t)
            lo.append(max(t - q1, 0.0))
            hi.append(max(q3 - t, 0.0))
            colors.append("tab:red" if r["status"] == "mismatch" else
                          "tab:blue" if name == "graphc" else "tab:gray")
        unit, scale = _unit(max(vals) if vals else 1.0)
        v = [t * scale for t in vals]
        ax.barh(range(len(v)), v, xerr=[[x * scale for x in lo], [x * scale for x in hi]],
                color=colors, error_kw={"elinewidth": 0.8, "capsize": 2})
        ax.set_yticks(range(len(v)))
        ax.set_yticklabels(names, fontsize=8)
        ax.invert_yaxis()
        log = bool(vals) and max(vals) / max(min(vals), 1e-12) > 30
        if log:
            ax.set_xscale("log")
        what = "first compile (cold)" if c["kind"] == "compile" else "median per call"
        ax.set_xlabel(f"{what}, {unit}" + (" (log scale)" if log else ""), fontsize=8)
        ax.set_title(f"{c['case']}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        for i, (t, h) in enumerate(zip(vals, hi)):
            ax.text((t + h) * scale, i, "  " + fmt_time(t), va="center", fontsize=7)
        if c["kind"] == "compile":       # fresh (not first) compiles: a marker
            fr = [(i, r["median_s"]) for i, r in enumerate(
                r for r in c["impls"].values() if r.get("first_s") is not None)
                if r.get("median_s") is not None]
            if fr:
                ax.plot([t * scale for _, t in fr], [i for i, _ in fr], "kD", ms=4,
                        label="median of fresh compiles")
                ax.legend(fontsize=7, loc="lower right")
        if vals:
            right = max(t + h for t, h in zip(vals, hi)) * scale
            ax.set_xlim(right=right * (4 if log else 1.3))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return None
