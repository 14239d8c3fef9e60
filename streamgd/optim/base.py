"""What every optimizer is: a frozen set of hyperparameters, a state layout and the code of its compiled rule."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from .schedules import ScheduleSettings


@dataclass(frozen=True)
class Optimizer:
    """Base of the optimizers; subclasses name their rule, state rows and hyperparameter slots.

    ``lr`` is optional: the base learning rate the schedule starts from when the training run names none.
    """

    lr: float | None = None

    name: ClassVar[str] = ""
    code: ClassVar[int] = -1
    state_names: ClassVar[tuple[str, ...]] = ()  # one row of the state per name, each as long as the params
    slots: ClassVar[dict[str, int]] = {}  # hyperparameter -> its index in the kernels' ``hyper`` array
    default_lr: ClassVar[tuple[float, float]] = (0.2, 0.5)  # (mini-batch, full batch) when nothing is named
    # the schedule (and its settings) a run uses when it names none; its lr_decay counts rows (not steps), so the
    # rate decays alike at every batch size (tests/test_defaults.py, scripts/bench_defaults.py)
    default_schedule: ClassVar[dict[str, Any]] = {"schedule": "invscaling", "lr_decay": ScheduleSettings.decay_per_row,
                                                  "lr_power": ScheduleSettings.power}
    default_batch_size: ClassVar[int] = 1024  # rows per step when the run names none
    # default_lr[0] is the rate of a batch of this many rows; smaller batches take batch_lr_factor of it
    reference_batch: ClassVar[int] = 32
    description: ClassVar[str] = ""  # one line for the command line's help
    # why the rule takes only a constant rate (None: any schedule); fit refuses another schedule with this reason
    constant_rate_reason: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None and item.name == "lr":
                continue
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                raise ConfigError(f"{self.name} option {item.name}={value!r} is not accepted; expected a number")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"{self.name} option lr={self.lr!r} is not accepted; expected a positive number")
        self.check()

    def check(self) -> None:
        """Range checks of the subclass's hyperparameters (raise ConfigError)."""

    def _in_unit_interval(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{self.name} option {name}={value!r} is not accepted; expected a number in [0, 1)")

    def _positive(self, *names: str, allow_zero: bool = False) -> None:
        for name in names:
            value = getattr(self, name)
            if not (value >= 0.0 if allow_zero else value > 0.0):
                raise ConfigError(f"{self.name} option {name}={value!r} is not accepted; expected a number "
                                  f"{'>= 0' if allow_zero else '> 0'}")

    @property
    def state_rows(self) -> int:
        return len(self.state_names)

    @classmethod
    def hyperparameters(cls) -> dict[str, tuple[Any, str]]:
        """Each hyperparameter but ``lr``: its default and its help (the field's ``help`` metadata)."""
        return {item.name: (item.default, item.metadata.get("help", "")) for item in fields(cls) if item.name != "lr"}

    def base_lr(self, full_batch: bool, batch_size: int = 1) -> float:
        """This optimizer's own learning rate, or its default for full batch or mini-batches of ``batch_size``."""
        if self.lr is not None:
            return float(self.lr)
        if full_batch:
            return self.default_lr[1]
        return self.default_lr[0] * self.batch_lr_factor(batch_size)

    def batch_lr_factor(self, batch_size: int) -> float:
        """The default rate's factor at ``batch_size``: sqrt(batch_size / reference_batch) below the reference, 1
        from it on. A step's noise grows as the batch shrinks; the square-root rule (Hoffer et al., 2017; Malladi
        et al., 2022 for Adam) keeps batch 1 from wandering at a rate tuned for mini-batches; from 32 rows on the
        rates are the mini-batch ones (tests/test_defaults.py).
        """
        return math.sqrt(min(float(batch_size), self.reference_batch) / self.reference_batch)

    def init_state(self, n_params: int) -> np.ndarray:
        """The initial optimizer state: zeros of shape ``(state_rows, n_params)``."""
        return np.zeros((self.state_rows, n_params), dtype=np.float64)

    def write_hyper(self, hyper: np.ndarray) -> None:
        """Write the hyperparameters into their slots of the kernels' ``hyper`` array."""
        for name, slot in self.slots.items():
            hyper[slot] = float(getattr(self, name))

    def final_params(self, params: np.ndarray, state: np.ndarray, steps: int) -> np.ndarray:
        """The parameters a trained model keeps after ``steps`` updates (the last iterate)."""
        return params

    def config(self) -> dict:
        """JSON-ready description: the name, every hyperparameter and the names of the state rows."""
        return {"name": self.name, **asdict(self), "state": list(self.state_names)}


def hyperparameter(default: float, help: str) -> Any:
    """A hyperparameter field: its default and a few words for the command line's help."""
    return field(default=default, metadata={"help": help})
