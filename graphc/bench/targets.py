"""Targets: what graphc should reach on a case, and whether it did."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Target:
    """Either a speedup over another implementation (``vs`` and ``ratio``:
    ``time(vs) / time(graphc) >= ratio``, from medians measured side by side)
    or an absolute bound on graphc's time (``max_seconds``, on the median or,
    for compile cases, on the ``"first"`` (cold) compile)."""
    vs: str | None = None
    ratio: float | None = None
    max_seconds: float | None = None
    stat: str = "median"
    text: str = ""

    def __post_init__(self):
        if (self.vs is None) == (self.max_seconds is None):
            raise ValueError("Target: give either vs= and ratio=, or max_seconds=")
        if self.vs is not None and self.ratio is None:
            raise ValueError("Target: vs= needs ratio=")
        if not self.text:
            if self.vs is not None:
                self.text = f"graphc >= {self.ratio:g}x faster than {self.vs}"
            else:
                self.text = f"graphc {self.stat} <= {fmt_time(self.max_seconds)}"

    def evaluate(self, times: dict) -> dict:
        """``times``: implementation -> seconds (the ``stat`` of every
        implementation whose result was correct). Returns the measured value
        and whether it is met (None when it cannot be told)."""
        g = times.get("graphc")
        out = {"target": self.text, "measured": None, "met": None}
        if g is None:
            out["why"] = "graphc did not run or was wrong"
            return out
        if self.vs is not None:
            other = times.get(self.vs)
            if other is None:
                out["why"] = f"{self.vs} did not run or was wrong"
                return out
            r = other / g
            out.update(measured=r, measured_text=f"{r:.2f}x", met=bool(r >= self.ratio))
        else:
            out.update(measured=g, measured_text=fmt_time(g), met=bool(g <= self.max_seconds))
        return out


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1.0:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    if s >= 1e-6:
        return f"{s * 1e6:.3g} us"
    return f"{s * 1e9:.3g} ns"
