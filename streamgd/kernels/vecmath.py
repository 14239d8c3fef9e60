"""exp and log1p in plain arithmetic, so that loops calling them vectorise.

LLVM turns a loop over ``math.exp`` or ``math.log1p`` into one libm call per element: without a vector math
library (Numba's SVML needs a patched LLVM that the PyPI wheels lack), the log loss of a mini-batch cost as much
as its margins and gradient together. These versions use multiplications, additions, one division, ``floor``
and a table lookup, which all vectorise. They cover the ranges the log loss needs, to within 3 units in the last
place (checked against ``math`` in tests/test_vecmath.py):

- ``exp_nonpositive(x)`` for x <= 0: Cody and Waite's reduction x = k ln 2 + r with |r| <= ln 2 / 2, then
  exp(r) by its Taylor series to r^13 (truncation below 1e-17), times 2^k from a table.
- ``log1p_unit(e)`` for 0 <= e <= 1: log(1 + e) = 2 atanh(s) with s = e / (2 + e) <= 1/3, by its series to s^35
  (truncation below 2e-18).

NaN in gives NaN out.
"""

from __future__ import annotations

import numpy as np

from .jit import njit

_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * _LN2_HI is exact for |k| < 2^11 (fdlibm)
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_MIN_K = -1075  # 2^-1075 rounds to 0: below it every result is 0
_UNDERFLOW = -745.2  # exp(x) rounds to 0 for x below about -745.13
_POW2 = np.ldexp(1.0, np.arange(_MIN_K, 1))  # _POW2[k - _MIN_K] = 2^k for _MIN_K <= k <= 0
_EXP_COEFFS = tuple(1.0 / float(np.prod(np.arange(1, i + 1, dtype=np.float64))) for i in range(14))  # 1/i!
_ATANH_COEFFS = tuple(1.0 / (2 * i + 1) for i in range(18))  # 1 / (2i + 1)

_inline = njit(nogil=True, inline="always", error_model="numpy")
# The Horner chains below are written out: as a loop over the coefficient tuple, the log-loss loop no longer
# vectorised (scripts/bench_kernel.py, logistic loss at batch 1,024; the figures are in benchmarks/README.md,
# "Kernels").


@_inline
def exp_nonpositive(x):
    """exp(x) for x <= 0 (x > 0 is clamped to 0: exp gives 1)."""
    x = x if not x > 0.0 else 0.0  # written so that NaN stays NaN
    kf = np.floor(x * _INV_LN2 + 0.5)
    kf = kf if kf > _MIN_K else float(_MIN_K)  # NaN gives _MIN_K: the table index stays valid, r carries the NaN
    r = (x - kf * _LN2_HI) - kf * _LN2_LO
    c = _EXP_COEFFS
    p = c[13]
    p = p * r + c[12]
    p = p * r + c[11]
    p = p * r + c[10]
    p = p * r + c[9]
    p = p * r + c[8]
    p = p * r + c[7]
    p = p * r + c[6]
    p = p * r + c[5]
    p = p * r + c[4]
    p = p * r + c[3]
    p = p * r + c[2]
    p = p * r + c[1]
    p = p * r + c[0]
    scaled = p * _POW2[np.int64(kf) - _MIN_K]
    return 0.0 if x < _UNDERFLOW else scaled  # below it (and at -inf, where r is not finite) exp rounds to 0


@_inline
def log1p_unit(e):
    """log(1 + e) for 0 <= e <= 1."""
    s = e / (2.0 + e)
    z = s * s
    c = _ATANH_COEFFS
    p = c[17]
    p = p * z + c[16]
    p = p * z + c[15]
    p = p * z + c[14]
    p = p * z + c[13]
    p = p * z + c[12]
    p = p * z + c[11]
    p = p * z + c[10]
    p = p * z + c[9]
    p = p * z + c[8]
    p = p * z + c[7]
    p = p * z + c[6]
    p = p * z + c[5]
    p = p * z + c[4]
    p = p * z + c[3]
    p = p * z + c[2]
    p = p * z + c[1]
    p = p * z + c[0]
    return 2.0 * s * p
