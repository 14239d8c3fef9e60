"""The optimizers' update rules, compiled: one branch per rule, called by the kernels' chunk loop after each
mini-batch (and once per epoch in full batch).

Every rule reads the mean gradient ``g`` (penalty added, clipped), the learning rate of this step, its
hyperparameters from ``hyper[H_OPT0:]`` and its state rows ``state[s, :]`` (one row per state vector, each as
long as ``params``), and updates ``params`` and ``state`` in place. ``step`` is the 0-based global step before the
update, so Adam's bias correction uses ``t = step + 1``.

The rules as published, written as PyTorch and optax write them:

=========  =========================================================================  =====================
code       update                                                                     state rows
=========  =========================================================================  =====================
sgd        w -= lr g                                                                  -
momentum   v = beta v + g;  w -= lr v                          (Polyak, 1964)         v
nesterov   v = beta v + g;  w -= lr (g + beta v)               (Sutskever et al.)     v
adagrad    G += g^2;  w -= lr g / (sqrt(G) + eps)              (Duchi et al., 2011)   G
rmsprop    s = rho s + (1 - rho) g^2;  w -= lr g / (sqrt(s) + eps)   (Tieleman, Hinton) s
adam       m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;                           m, v
           w -= lr m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps)   (Kingma, Ba, 2015)
adamw      coef *= 1 - lr wd, then adam                        (Loshchilov, Hutter)   m, v
asgd       w -= lr g;  from step t0 on, wbar += (w - wbar) / (t - t0)  (Polyak, Ruppert)  wbar
ftrl       sigma = (sqrt(n + g^2) - sqrt(n)) / lr;  z += g - sigma w;  n += g^2;        z, n
           w = 0 if |z| <= l1 else -(z - sign(z) l1) / ((beta + sqrt(n)) / lr + l2)
           (FTRL-Proximal, McMahan et al., 2013, Algorithm 1, per coordinate)
=========  =========================================================================  =====================

AdamW's decoupled decay, like the L1/L2 penalty, never touches the intercepts (the entries from ``n_coef`` on).
FTRL applies the penalty itself (``l1 = alpha * l1_ratio``, ``l2 = alpha * (1 - l1_ratio)``; none on the
intercepts), so the kernels add no L2 gradient and take no L1 step for it.
"""

from __future__ import annotations

import math

from .codes import (  # noqa: F401 - the codes the optimizers (streamgd.optim) name their rules by
    H_ALPHA,
    H_AVERAGE_START,
    H_BETA1,
    H_BETA2,
    H_EPS,
    H_FTRL_BETA,
    H_L1_RATIO,
    H_L1_ROW,
    H_LAZY_ROW,
    H_OPT0,
    H_WEIGHT_DECAY,
    N_HYPER,
    OPT_ADAGRAD,
    OPT_ADAM,
    OPT_ADAMW,
    OPT_ASGD,
    OPT_FTRL,
    OPT_MOMENTUM,
    OPT_NESTEROV,
    OPT_RMSPROP,
    OPT_SGD,
    STATE_ROWS,
)
from .jit import inlined


@inlined
def optimizer_step(opt_kind, params, grad, state, step, lr, hyper, n_coef):  # pragma: no cover - compiled
    """Apply one update of rule ``opt_kind`` in place (see the module docstring for the rules)."""
    n = params.shape[0]
    if opt_kind == OPT_SGD:
        for i in range(n):
            params[i] -= lr * grad[i]
    elif opt_kind == OPT_MOMENTUM or opt_kind == OPT_NESTEROV:
        beta = hyper[H_BETA1]
        velocity = state[0]
        nesterov = opt_kind == OPT_NESTEROV
        for i in range(n):
            v = beta * velocity[i] + grad[i]
            velocity[i] = v
            params[i] -= lr * (grad[i] + beta * v if nesterov else v)
    elif opt_kind == OPT_ADAGRAD:
        eps = hyper[H_EPS]
        total = state[0]
        for i in range(n):
            g = grad[i]
            total[i] += g * g
            params[i] -= lr * g / (math.sqrt(total[i]) + eps)
    elif opt_kind == OPT_RMSPROP:
        rho = hyper[H_BETA2]
        eps = hyper[H_EPS]
        mean_square = state[0]
        for i in range(n):
            g = grad[i]
            mean_square[i] = rho * mean_square[i] + (1.0 - rho) * g * g
            params[i] -= lr * g / (math.sqrt(mean_square[i]) + eps)
    elif opt_kind == OPT_ADAM or opt_kind == OPT_ADAMW:
        beta1 = hyper[H_BETA1]
        beta2 = hyper[H_BETA2]
        eps = hyper[H_EPS]
        if opt_kind == OPT_ADAMW:
            shrink = 1.0 - lr * hyper[H_WEIGHT_DECAY]
            for i in range(n_coef):
                params[i] *= shrink
        t = step + 1.0
        correction1 = 1.0 - beta1 ** t
        correction2 = 1.0 - beta2 ** t
        m = state[0]
        v = state[1]
        for i in range(n):
            g = grad[i]
            m[i] = beta1 * m[i] + (1.0 - beta1) * g
            v[i] = beta2 * v[i] + (1.0 - beta2) * g * g
            params[i] -= lr * (m[i] / correction1) / (math.sqrt(v[i] / correction2) + eps)
    elif opt_kind == OPT_FTRL:
        beta = hyper[H_FTRL_BETA]
        l1 = hyper[H_ALPHA] * hyper[H_L1_RATIO]
        l2 = hyper[H_ALPHA] * (1.0 - hyper[H_L1_RATIO])
        z = state[0]
        sum_squares = state[1]
        for i in range(n):
            penalised = i < n_coef
            params[i] = ftrl_coordinate(params[i], grad[i], z, sum_squares, i, lr, beta, l1 if penalised else 0.0,
                                        l2 if penalised else 0.0)
    else:  # OPT_ASGD: plain SGD steps; state[0] is the running mean of the iterates from H_AVERAGE_START on
        for i in range(n):
            params[i] -= lr * grad[i]


@inlined
def ftrl_coordinate(w, g, z, sum_squares, i, alpha, beta, l1, l2):  # pragma: no cover - compiled
    """One FTRL-Proximal update of coordinate ``i`` (z[i] and n[i] in place); returns its new weight."""
    n_old = sum_squares[i]
    n_new = n_old + g * g
    root = math.sqrt(n_new)
    z_new = z[i] + g - (root - math.sqrt(n_old)) / alpha * w
    z[i] = z_new
    sum_squares[i] = n_new
    if abs(z_new) <= l1:
        return 0.0
    shrunk = z_new - l1 if z_new > 0.0 else z_new + l1
    return -shrunk / ((beta + root) / alpha + l2)


@inlined
def after_step(opt_kind, params, state, step, hyper):  # pragma: no cover - compiled
    """Work a rule does on the final iterate of a step (after the L1 proximal step): ASGD's average."""
    if opt_kind == OPT_ASGD:
        start = hyper[H_AVERAGE_START]
        if step >= start:
            count = step - start + 1.0
            average = state[0]
            for i in range(params.shape[0]):
                average[i] += (params[i] - average[i]) / count
