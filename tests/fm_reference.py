"""Slow, obviously correct NumPy references for factorization machines: the twins the compiled FM/FFM kernels
are checked against (issue 28, item 5).

One row is given in CSR form: ``indices`` (the slots of its stored entries, int), ``values`` (their values x)
and, for FFM, ``fields`` (the field of each entry, e.g. the column it came from). Sums run over the row's
*entries*, not over distinct slots, so a hashed row whose two entries share a slot is handled the same way by
every formula here (the pair of those two entries counts, with ``<v_s, v_s>``).

FM (Rendle, 2010), parameters ``w0`` (scalar), ``w`` (n_slots,), ``V`` (n_slots, k)::

    margin = w0 + sum_i w[s_i] x_i + sum_{i<j} <V[s_i], V[s_j]> x_i x_j
           = w0 + sum_i w[s_i] x_i + 1/2 sum_f [ (sum_i V[s_i, f] x_i)^2 - sum_i V[s_i, f]^2 x_i^2 ]

the first line is :func:`fm_margin_pairwise` (O(k n^2)), the second :func:`fm_margin` (O(k n), Rendle's
identity). FFM (Juan et al., 2016), ``V`` of shape (n_slots, n_fields, k)::

    margin = w0 + sum_i w[s_i] x_i + sum_{i<j} <V[s_i, f_j], V[s_j, f_i]> x_i x_j

References
----------
S. Rendle, "Factorization Machines", ICDM 2010 (eq. 1 and lemma 3.1).
Y. Juan, Y. Zhuang, W.-S. Chin, C.-J. Lin, "Field-aware Factorization Machines for CTR Prediction", RecSys 2016
(eq. 3).

>>> import numpy as np
>>> V = np.array([[1.0, 0.0], [2.0, 1.0], [0.5, -1.0]])
>>> fm_margin([0, 2], [1.0, 2.0], 0.5, np.array([1.0, 0.0, 3.0]), V)  # 0.5 + 1 + 6 + <V0, V2> * 2
8.5
>>> fm_margin_pairwise([0, 2], [1.0, 2.0], 0.5, np.array([1.0, 0.0, 3.0]), V)
8.5
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _row(indices, values) -> tuple[np.ndarray, np.ndarray]:
    indices = np.asarray(indices, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if indices.shape != values.shape or indices.ndim != 1:
        raise ValueError(f"indices {indices.shape} and values {values.shape} must be 1-d of one length")
    return indices, values


def linear_margin(indices, values, w0: float, w: np.ndarray) -> float:
    """``w0 + sum_i w[s_i] x_i``: the linear part every model here shares."""
    indices, values = _row(indices, values)
    return float(w0 + np.sum(np.asarray(w, dtype=np.float64)[indices] * values))


def fm_margin(indices, values, w0: float, w: np.ndarray, V: np.ndarray) -> float:
    """FM margin of one row by Rendle's O(k n) identity: 1/2 sum_f [(sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2]."""
    indices, values = _row(indices, values)
    vx = np.asarray(V, dtype=np.float64)[indices] * values[:, None]  # (n, k): v_{s_i} x_i
    pairs = 0.5 * float(np.sum(vx.sum(axis=0) ** 2 - (vx ** 2).sum(axis=0)))
    return linear_margin(indices, values, w0, w) + float(pairs)


def fm_margin_pairwise(indices, values, w0: float, w: np.ndarray, V: np.ndarray) -> float:
    """FM margin of one row by its definition: a loop over every pair of entries i < j (O(k n^2))."""
    indices, values = _row(indices, values)
    V = np.asarray(V, dtype=np.float64)
    pairs = 0.0
    for i in range(len(indices)):
        for j in range(i + 1, len(indices)):
            pairs += float(np.dot(V[indices[i]], V[indices[j]])) * values[i] * values[j]
    return linear_margin(indices, values, w0, w) + float(pairs)


def fm_gradient(indices, values, w0: float, w: np.ndarray, V: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """d margin / d (w0, w, V) of one row, as arrays shaped like ``w`` and ``V`` (zero outside the row's slots).

    d/dw[s] = sum over entries i with s_i = s of x_i; d/dV[s] = sum over those entries of
    x_i (sum_j V[s_j] x_j - V[s_i] x_i) (Rendle's eq. 4, accumulated when two entries share a slot)."""
    indices, values = _row(indices, values)
    V = np.asarray(V, dtype=np.float64)
    g_w = np.zeros(np.shape(w))
    g_V = np.zeros(V.shape)
    total = (V[indices] * values[:, None]).sum(axis=0)  # (k,): sum_j v_{s_j} x_j
    for s, x in zip(indices, values):
        g_w[s] += x
        g_V[s] += x * (total - V[s] * x)
    return 1.0, g_w, g_V


def ffm_margin(indices, values, fields, w0: float, w: np.ndarray, V: np.ndarray) -> float:
    """FFM margin of one row by its definition: sum over pairs i < j of <V[s_i, f_j], V[s_j, f_i]> x_i x_j
    (O(n^2 k)); ``V`` has shape (n_slots, n_fields, k)."""
    indices, values = _row(indices, values)
    fields = np.asarray(fields, dtype=np.int64)
    V = np.asarray(V, dtype=np.float64)
    if fields.shape != indices.shape:
        raise ValueError(f"fields {fields.shape} must have one field per entry {indices.shape}")
    pairs = 0.0
    for i in range(len(indices)):
        for j in range(i + 1, len(indices)):
            pairs += float(np.dot(V[indices[i], fields[j]], V[indices[j], fields[i]])) * values[i] * values[j]
    return linear_margin(indices, values, w0, w) + float(pairs)


def ffm_gradient(indices, values, fields, w0: float, w: np.ndarray,
                 V: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """d margin / d (w0, w, V) of one FFM row, shaped like ``w`` and ``V``.

    Each pair i < j adds V[s_j, f_i] x_i x_j to d/dV[s_i, f_j] and V[s_i, f_j] x_i x_j to d/dV[s_j, f_i]
    (when both name the same vector, it gets both terms: the derivative of |v|^2 x_i x_j)."""
    indices, values = _row(indices, values)
    fields = np.asarray(fields, dtype=np.int64)
    V = np.asarray(V, dtype=np.float64)
    g_w = np.zeros(np.shape(w))
    g_V = np.zeros(V.shape)
    for s, x in zip(indices, values):
        g_w[s] += x
    for i in range(len(indices)):
        for j in range(i + 1, len(indices)):
            xx = values[i] * values[j]
            a, b = V[indices[i], fields[j]].copy(), V[indices[j], fields[i]].copy()
            g_V[indices[i], fields[j]] += b * xx
            g_V[indices[j], fields[i]] += a * xx
    return 1.0, g_w, g_V


# --- batches over a scipy CSR matrix (rows = examples, columns = slots) ---

def _csr(X) -> sp.csr_matrix:
    X = sp.csr_matrix(X, copy=True)
    X.sort_indices()  # does not change any margin; gives entries a fixed order
    return X


def entry_fields(X, column_field) -> np.ndarray:
    """The field of every stored entry of ``X`` (aligned with ``X.data``) from a field per column (slot)."""
    return np.asarray(column_field, dtype=np.int64)[_csr(X).indices]


def fm_margins(X, w0: float, w: np.ndarray, V: np.ndarray, pairwise: bool = False) -> np.ndarray:
    """FM margin of every row of ``X`` (n_rows, n_slots); ``pairwise`` uses the O(k n^2) definition."""
    X = _csr(X)
    one = fm_margin_pairwise if pairwise else fm_margin
    return np.array([one(X.indices[X.indptr[r]:X.indptr[r + 1]], X.data[X.indptr[r]:X.indptr[r + 1]], w0, w, V)
                     for r in range(X.shape[0])])


def ffm_margins(X, fields: np.ndarray, w0: float, w: np.ndarray, V: np.ndarray) -> np.ndarray:
    """FFM margin of every row of ``X``; ``fields`` gives one field per stored entry (see :func:`entry_fields`)
    of ``X`` after ``sort_indices``."""
    X = _csr(X)
    fields = np.asarray(fields, dtype=np.int64)
    return np.array([ffm_margin(X.indices[a:b], X.data[a:b], fields[a:b], w0, w, V)
                     for a, b in zip(X.indptr[:-1], X.indptr[1:])])


def fm_batch_gradient(X, multipliers: np.ndarray, w0: float, w: np.ndarray,
                      V: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """sum_r c_r d margin_r / d (w0, w, V): with c_r = dloss/dmargin of row r (logistic: p_r - y_r), the
    gradient of a batch's summed loss."""
    X = _csr(X)
    g0, g_w, g_V = 0.0, np.zeros(np.shape(w)), np.zeros(np.shape(V))
    for r, (a, b) in enumerate(zip(X.indptr[:-1], X.indptr[1:])):
        d0, dw, dV = fm_gradient(X.indices[a:b], X.data[a:b], w0, w, V)
        g0, g_w, g_V = g0 + multipliers[r] * d0, g_w + multipliers[r] * dw, g_V + multipliers[r] * dV
    return g0, g_w, g_V


def ffm_batch_gradient(X, fields: np.ndarray, multipliers: np.ndarray, w0: float, w: np.ndarray,
                       V: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The FFM twin of :func:`fm_batch_gradient`; ``fields`` as in :func:`ffm_margins`."""
    X = _csr(X)
    fields = np.asarray(fields, dtype=np.int64)
    g0, g_w, g_V = 0.0, np.zeros(np.shape(w)), np.zeros(np.shape(V))
    for r, (a, b) in enumerate(zip(X.indptr[:-1], X.indptr[1:])):
        d0, dw, dV = ffm_gradient(X.indices[a:b], X.data[a:b], fields[a:b], w0, w, V)
        g0, g_w, g_V = g0 + multipliers[r] * d0, g_w + multipliers[r] * dw, g_V + multipliers[r] * dV
    return g0, g_w, g_V


def logistic_multipliers(margins: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dloss/dmargin of the logistic loss log(1 + exp(-m)) for y = 1, log(1 + exp(m)) for y = 0: p - y."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(margins))) - np.asarray(y, dtype=np.float64)
