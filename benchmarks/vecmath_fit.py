"""Fit the polynomial coefficients of graphc/backend/llvm/vecmath.py.

Weighted minimax (Remez exchange) of the relative error, in 40-digit
arithmetic (needs ``mpmath``, not a dependency of graphc). The coefficients
are rounded to the target dtype one at a time, lowest order first, each time
refitting the remaining ones, so the rounding costs little accuracy.

    python benchmarks/vecmath_fit.py          # prints every table (a minute or two)

Each line gives the dtype, the function, the coefficients and the maximum
relative error of the rounded polynomial (measured on a fine grid).
"""
from __future__ import annotations

import mpmath as mp
import numpy as np

mp.mp.dps = 40


def _extrema(ev, m):
    """Indices of the largest |ev| on each run of one sign; the smallest are dropped
    (keeping signs alternating) until at most ``m`` remain."""
    segs, cur = [], [0]
    for i in range(1, len(ev)):
        if mp.sign(ev[i]) == mp.sign(ev[cur[0]]):
            cur.append(i)
        else:
            segs.append(cur)
            cur = [i]
    segs.append(cur)
    ext = [max(s, key=lambda i: abs(ev[i])) for s in segs]
    while len(ext) > m:
        j = min(range(len(ext)), key=lambda j: abs(ev[ext[j]]))
        del ext[j]
        if 0 < j < len(ext) and mp.sign(ev[ext[j - 1]]) == mp.sign(ev[ext[j]]):
            del ext[j if abs(ev[ext[j]]) < abs(ev[ext[j - 1]]) else j - 1]
    return ext


def remez(f, w, basis, a, b, iters=30, grid=3000):
    """Coefficients of ``sum(c_k * basis_k)`` minimizing ``max |w * (f - sum)|`` on [a, b].

    The weight may vanish at isolated points (relative error of a function that is 0
    there); the first reference is the error extrema of a weighted least-squares fit."""
    n = len(basis)
    m = n + 1
    G = [a + (b - a) * mp.mpf(i) / grid for i in range(grid + 1)]
    G = [g for g in G if w(g) != 0]
    fG = [f(g) for g in G]
    wG = [w(g) for g in G]
    bG = [[phi(g) for phi in basis] for g in G]

    def errors(c):
        return [wg * (fg - mp.fsum(ck * bk for ck, bk in zip(c, bg)))
                for fg, wg, bg in zip(fG, wG, bG)]

    # weighted least squares: rows w*basis, right side w*f
    M = mp.matrix([[wg * bk for bk in bg] for wg, bg in zip(wG, bG)])
    y = mp.matrix([wg * fg for wg, fg in zip(wG, fG)])
    Mt = M.T
    c = list(mp.lu_solve(Mt * M, Mt * y))
    best = (max(abs(e) for e in errors(c)), c)
    ev = errors(c)
    for _ in range(iters):
        ext = _extrema(ev, m)
        if len(ext) < m:
            break
        A = mp.matrix(m, m)
        rhs = mp.matrix(m, 1)
        for i, j in enumerate(ext):
            for k in range(n):
                A[i, k] = bG[j][k]
            A[i, n] = (-1) ** i / wG[j]
            rhs[i] = fG[j]
        sol = mp.lu_solve(A, rhs)
        c = [sol[k] for k in range(n)]
        ev = errors(c)
        maxerr = max(abs(e) for e in ev)
        if maxerr < best[0]:
            best = (maxerr, c)
        if maxerr / abs(sol[n]) - 1 < mp.mpf("1e-4"):
            break
    return best[1]


def powers(k0, k1):
    return [(lambda k: lambda x: x ** k)(k) for k in range(k0, k1)]


def fit_rounded(f, w, k0, k1, a, b, dtype):
    """Fit ``f ~ sum(c_k x**k, k0 <= k < k1)`` (weight ``w``); round coefficient k0 and
    refit the higher ones, and so on. Each stage fits ``(f - fixed part) / x**p`` with
    the basis 1, x, x**2, ... and weight ``w * |x|**p`` (same error, but a basis that
    does not vanish at 0, so the alternation of the error is well defined)."""
    fixed = []
    for p in range(k0, k1):
        done = list(zip(fixed, range(k0, p)))

        def g(x, done=done, p=p):
            return (f(x) - mp.fsum(c * x ** k for c, k in done)) / x ** p

        c = remez(g, lambda x, p=p: w(x) * abs(x) ** p, powers(0, k1 - p), a, b)
        fixed.append(float(np.asarray(float(c[0]), dtype=dtype)))
    G = [a + (b - a) * mp.mpf(i) / 20000 for i in range(20001)]
    err = max(abs(w(x) * (f(x) - mp.fsum(c * x ** k for c, k in zip(fixed, range(k0, k1)))))
              for x in G if w(x) != 0)
    return fixed, float(err)


def expm1_table(deg, dtype, a, b):
    """expm1(r) = r + r**2 * (c0 + c1 r + ... + c_deg r**deg), relative error."""
    return fit_rounded(lambda r: mp.expm1(r) - r, lambda r: 1 / abs(mp.expm1(r)) if r else 0,
                       2, deg + 3, a, b, dtype)


def log_table(deg, dtype):
    """log1p(f) = 2s + s * R(z), s = f/(2+f), z = s*s, R = z * (c0 + ... + c_deg z**deg);
    the relative error of log1p is about |R error| / 2."""
    smax = (mp.sqrt(2) - 1) / (mp.sqrt(2) + 1)
    zmax = smax ** 2 * mp.mpf("1.0001")
    f = lambda z: (2 * mp.atanh(mp.sqrt(z)) - 2 * mp.sqrt(z)) / mp.sqrt(z) if z else mp.mpf(0)
    return fit_rounded(f, lambda z: mp.mpf(1) / 2, 1, deg + 2, zmax * mp.mpf("1e-6"), zmax, dtype)


def main():
    half = mp.log(2) / 2 * mp.mpf("1.0002")
    pos = (mp.mpf("-0.0005"), mp.log(2) + mp.mpf("0.0005"))
    for dt, de, dm, dl in ((np.float32, 4, 5, 2), (np.float64, 9, 10, 6)):
        name = np.dtype(dt).name
        print(name, "exp_poly (|r| <= ln2/2)", *expm1_table(de, dt, -half, half))
        print(name, "expm1_poly (r in [0, ln2])", *expm1_table(dm, dt, *pos))
        print(name, "log_poly", *log_table(dl, dt))
    # float64 tables of float32 pow (which needs only ~2**-38 from log, ~2**-34 from exp)
    print("float64 pow_exp_poly", *expm1_table(6, np.float64, -half, half))
    print("float64 pow_log_poly", *log_table(4, np.float64))


if __name__ == "__main__":
    main()
