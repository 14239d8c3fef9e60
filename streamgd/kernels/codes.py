"""The kernels' codes: losses, optimizer rules, the slots of the hyperparameter vector, the state rows each rule
reads. Plain integers and no Numba, so that a model file can name its loss, and be read, without loading the
compiler.

The names of the codes are not written here: a loss is named by its model kind (``streamgd.models.linear``'s
``MODEL_KINDS``) and a rule by its optimizer (``streamgd.optim``'s ``OPTIMIZERS``). Those registries sit above the
kernels, so they hand their names down (``name_losses``, ``name_optimizers``) when they are built; the kernels
use them only to say what they compile.

>>> name_losses({LOSS_LOG: "logistic"}); loss_label(LOSS_LOG), loss_label(99)
('logistic', 'loss 99')
"""

from __future__ import annotations

from collections.abc import Mapping

# loss codes
LOSS_SQUARED = 0
LOSS_LOG = 1
LOSS_SOFTMAX = 2
LOSS_HINGE = 3
LOSS_SQUARED_HINGE = 4
LOSS_HUBER = 5
LOSS_POISSON = 6
N_LOSSES = 7

# optimizer codes (the rules are in streamgd.kernels.update_rules)
OPT_SGD = 0
OPT_MOMENTUM = 1
OPT_NESTEROV = 2
OPT_ADAGRAD = 3
OPT_RMSPROP = 4
OPT_ADAM = 5
OPT_ADAMW = 6
OPT_ASGD = 7
OPT_FTRL = 8
N_OPTIMIZERS = 9

# The rows of the optimizer state each rule reads and writes (each row as long as the parameters). Compiled code
# does not check bounds, so a state with fewer rows is refused before it reaches a loop.
STATE_ROWS = (0, 1, 1, 1, 1, 2, 2, 1, 2)  # by optimizer code

# The kernels' hyperparameter vector, one slot map for all of it: the penalty's and the loss's slots, then the
# optimizers' (H_OPT0 on), then the rows of the state that hold the L1 record and the sparse slots' stamps.
H_ALPHA = 0
H_L1_RATIO = 1
H_CLIP_NORM = 2
H_HUBER_EPS = 3
H_OPT0 = 4
H_BETA1 = 4  # momentum and nesterov's beta; adam's beta1
H_BETA2 = 5  # rmsprop's rho; adam's beta2
H_EPS = 6
H_WEIGHT_DECAY = 7
H_AVERAGE_START = 8  # asgd: the first step whose iterate enters the average
H_FTRL_BETA = 9  # ftrl: beta of the per-coordinate rate (beta + sqrt(n)) / lr
H_LAZY_ROW = 10  # 1 + the row of the state that holds the sparse slots' decay stamps; 0: none (see kernels.sparse)
H_L1_ROW = 11  # 1 + the row of the optimizer state that holds the cumulative L1 penalty; 0: none (plain prox)
# factorization machines (streamgd.kernels.factors): 0 factors is the linear model
H_FACTORS = 12  # k, the length of each factor vector
H_FACTOR_L2 = 13  # the factors' own L2 penalty, on the rows a batch touches
H_FACTOR_NUMERIC = 14  # 1: the dense block's columns have factor rows too (before the slots'); 0: the slots only
H_FIELDS = 15  # a field-aware FM (streamgd.kernels.field_factors): its number of fields; 0: a plain FM
H_FACTOR_LR = 16  # the factors' rate as a multiple of the run's; 0: the run's own
H_FACTOR_SPAN = 17  # the first m sparse entries of a row have factors (a FeatureSpec's factor columns); 0: all
N_HYPER = 18

# The rule that updates the factor rows, by the optimizer code of the run (absent: factors refused with it), and
# the state rows it keeps per factor: FTRL's proximal form has no use for a factor (no L1 zeros wanted there), so
# FTRL runs take AdaGrad for the factors, as libffm and xLearn do.
FACTOR_RULES = {OPT_SGD: OPT_SGD, OPT_ADAGRAD: OPT_ADAGRAD, OPT_ADAM: OPT_ADAM, OPT_FTRL: OPT_ADAGRAD}
FACTOR_FLOOR = 1e-10  # the AdaGrad denominator's floor of factor rows where the run names neither eps nor FTRL's beta


def factor_state_rows(opt_kind: int) -> int:
    """The state vectors a factor row keeps beside its k values under optimizer ``opt_kind``."""
    return STATE_ROWS[FACTOR_RULES[int(opt_kind)]]

_loss_names: dict[int, str] = {}
_optimizer_names: dict[int, str] = {}


def name_losses(names: Mapping[int, str]) -> None:
    """Record the names of loss codes (called by the model kinds' registry)."""
    _loss_names.update({int(code): str(name) for code, name in names.items()})


def name_optimizers(names: Mapping[int, str]) -> None:
    """Record the names of optimizer codes (called by the optimizers' registry)."""
    _optimizer_names.update({int(code): str(name) for code, name in names.items()})


def loss_label(code: int) -> str:
    """The registry's name of a loss code, or ``loss <code>`` before the registry is loaded."""
    return _loss_names.get(int(code), f"loss {code}")


def optimizer_label(code: int) -> str:
    """The registry's name of an optimizer code, or ``optimizer <code>`` before the registry is loaded."""
    return _optimizer_names.get(int(code), f"optimizer {code}")
