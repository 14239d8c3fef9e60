"""What a run is made of: ``Run``, what stays fixed while it trains, and ``TrainState``, what changes (all that a
checkpoint stores)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.cache import CacheSettings
from ..data.dataset import Dataset
from ..data.memory_plan import MemoryPlan
from ..data.sparse_block import BlockNames
from ..features.spec import FeatureSpec
from ..features.standardize import Standardizer
from ..features.stats import DatasetStats
from ..models.linear import LinearModel
from ..optim import Optimizer
from ..optim.state import laid_out
from .checkpoint import new_run_id

if TYPE_CHECKING:
    from .checkpoint import Checkpoint

__all__ = ["Run", "TrainState", "n_slots"]


@dataclass
class TrainState:
    """Everything that changes during training, and all a checkpoint stores: parameters, optimizer state, the
    cursor (epoch, next chunk of its plan, global step, chunks done) and the epoch's partial sums."""

    params: np.ndarray
    opt_state: np.ndarray
    step: int = 0
    epoch: int = 0
    first_epoch: int = 0  # the epoch this run started at (a model's epochs, when continuing from one)
    next_chunk: int = 0
    chunks_done: int = 0
    epoch_loss_sum: float = 0.0
    epoch_rows: int = 0
    epoch_rows_skipped: int = 0  # rows of the epoch's chunks left out: no target, or drop-rows' missing features
    epoch_y_sum: float = 0.0
    epoch_y_sq_sum: float = 0.0
    grad_sum: np.ndarray | None = None  # full batch: the gradient summed so far this epoch
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)  # early stopping: params, loss, epoch, waited
    finished: bool = False
    run_id: str = field(default_factory=new_run_id)  # names its checkpoints: a run prunes only its own
    # a model handed these params folded its standardization into them: (coef width, the dense coefficients and
    # the intercepts as training left them); ``model_of_run.training_params`` puts them back
    unfolded_linear: tuple | None = None


    def start_epoch(self, full_batch: bool) -> None:
        self.next_chunk = 0
        self.epoch_loss_sum = self.epoch_y_sum = self.epoch_y_sq_sum = 0.0
        self.epoch_rows = self.epoch_rows_skipped = 0
        self.grad_sum = np.zeros_like(self.params) if full_batch else None

    def add_sums(self, other: TrainState) -> None:
        """Add another state's epoch sums (a worker's shard) to this one's."""
        self.epoch_loss_sum += other.epoch_loss_sum
        self.epoch_rows += other.epoch_rows
        self.epoch_rows_skipped += other.epoch_rows_skipped
        self.epoch_y_sum += other.epoch_y_sum
        self.epoch_y_sq_sum += other.epoch_y_sq_sum

    def cursor(self) -> dict:
        return {"epoch": self.epoch, "first_epoch": self.first_epoch, "next_chunk": self.next_chunk, "step": self.step,
                "chunks_done": self.chunks_done, "epoch_loss_sum": self.epoch_loss_sum,
                "epoch_rows": self.epoch_rows, "epoch_rows_skipped": self.epoch_rows_skipped,
                "epoch_y_sum": self.epoch_y_sum,
                "epoch_y_sq_sum": self.epoch_y_sq_sum, "finished": self.finished}

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, per_coordinate: bool = False) -> TrainState:
        """The state a checkpoint stores, its parameters and optimizer state copied (``per_coordinate``: into one
        block, as ``streamgd.optim.state.initial_state`` lays out a batch-1 sparse run's)."""
        cursor = checkpoint.cursor
        params, opt_state = laid_out(checkpoint.params, checkpoint.opt_state, per_coordinate)
        return cls(params=params, opt_state=opt_state, step=cursor["step"],
                   epoch=cursor["epoch"], first_epoch=cursor.get("first_epoch", 0), next_chunk=cursor["next_chunk"],
                   chunks_done=cursor["chunks_done"],
                   epoch_loss_sum=cursor["epoch_loss_sum"], epoch_rows=cursor["epoch_rows"],
                   epoch_rows_skipped=cursor.get("epoch_rows_skipped", 0),  # absent from older checkpoints
                   epoch_y_sum=cursor["epoch_y_sum"], epoch_y_sq_sum=cursor["epoch_y_sq_sum"],
                   grad_sum=None if checkpoint.grad_sum is None else checkpoint.grad_sum.copy(),
                   history=list(checkpoint.history), best=dict(checkpoint.best), finished=cursor["finished"],
                   run_id=checkpoint.run or new_run_id())  # a resumed run goes on under its name


@dataclass
class Run:
    """What stays fixed during a run: the data split, the model's shape and the compiled settings."""

    train: Dataset | None
    validation: Dataset | None
    model_cls: type[LinearModel]
    classes: list | None
    encoder: Any
    n_out: int
    optimizer: Optimizer
    hyper: np.ndarray
    schedule: Any
    standardizer: Standardizer | None
    class_weights: np.ndarray | None = None
    spec: FeatureSpec | None = None
    feature_names: list[str] | None = None  # the model's features (the spec's outputs, or the numeric inputs)
    stats: DatasetStats | None = None
    cache: CacheSettings | None = None  # the epoch cache, opened once per run (``chunk_step.cache_settings``)
    memory_plan: MemoryPlan | None = None  # how the memory budget is spent (None: no budget); in every record

    @property
    def n_slots(self) -> int:
        """The model's sparse slots (the last features): its FeatureSpec's or an in-memory sparse matrix's."""
        return n_slots(self.spec, self.feature_names)


def n_slots(spec: FeatureSpec | None, feature_names: Sequence[str]) -> int:
    """The sparse slots among ``feature_names`` (the last ones): the FeatureSpec's, or a sparse matrix's."""
    if spec is not None:
        return spec.n_slots
    return feature_names.n_slots if isinstance(feature_names, BlockNames) else 0
