"""The trainer: epochs over a plan, one compiled kernel call per chunk, and a history of every epoch.

Full batch, SGD and mini-batch are one code path that differs in batch size only: ``batch_size=1`` is SGD,
``batch_size=n`` mini-batch, and ``batch_size="full"`` sums the gradient over the whole stream and steps once
per epoch (gradient descent on data that does not fit in memory). Around that loop: held-out validation, early
stopping, checkpoints with exact resume, a divergence guard and Ctrl-C handling.

The Trainer opens the data, sets a run up (``streamgd.training.run_setup``) and hands its epochs to the one
epoch driver (``streamgd.training.epoch``) with its hooks: checkpoints when due, Ctrl-C's stop, progress. An
``EpochRunner`` (dask's, in ``distributed.py``) runs the set-up's passes and the epochs' chunks elsewhere.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..data.cache import check_cache_dir
from ..data.dataset import Dataset
from ..data.memory_plan import MemoryPlan
from ..errors import ConfigError, TrainingInterrupted
from ..models.linear import LinearModel
from .checkpoint import CheckpointClock, fingerprint, latest_checkpoint, save_checkpoint
from .chunk_step import ChunkJob, chunk_job
from .config import TrainConfig
from .epoch import EpochProgress, EpochSource, LocalEpochs, steps_per_epoch, train_epochs
from .model_of_run import assemble_model
from .run_setup import DataScans, LocalScans, RunSetup, open_training_data
from .state import Run, TrainState
from .threads import ThreadedEpochs
from .warm_start import load_init

__all__ = ["ChunkProgress", "EpochRunner", "TrainConfig", "TrainState", "Trainer", "fit"]


@dataclass
class ChunkProgress:
    """What the trainer reports after each chunk (for progress bars), and once more when the epoch is booked,
    with its history record (``record``: the figures a per-epoch line prints)."""

    epoch: int  # counted from 0, as the state's cursor (the record's ``epoch`` counts from 1)
    epochs: int
    rows_done: int
    rows_total: int
    rows_per_s: float
    loss: float
    rss_mb: float
    validation_loss: float | None = None  # of the previous epoch, when there is validation data
    record: dict | None = None  # the epoch's history record, once it is booked


class EpochRunner(EpochSource, DataScans, Protocol):
    """Runs a Trainer's passes over the data and its epochs' chunks somewhere else (dask workers); the set-up,
    the record, early stopping and checkpoints stay the Trainer's."""

    def settings(self) -> dict:
        """Settings that shape the result besides the TrainConfig (stored in checkpoints, models, summaries)."""


class Trainer:
    """Train a linear model on a dataset streamed from disk.

    >>> import tempfile, os, numpy as np, pyarrow as pa, pyarrow.parquet as pq
    >>> rng = np.random.default_rng(0); X = rng.standard_normal((2000, 2)); y = X @ [1.5, -2.0] + 0.5
    >>> path = os.path.join(tempfile.mkdtemp(), "d.parquet")
    >>> pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "y": y}), path, row_group_size=500)
    >>> model = Trainer(model="linear", batch_size=32, epochs=5, lr=0.05, alpha=0.0).fit(path, target="y")
    >>> np.round(model.coef_, 2).tolist(), np.round(model.intercept_, 2).tolist()
    ([[1.5, -2.0]], [0.5])
    """

    def __init__(self, config: TrainConfig | None = None, on_chunk: Callable[[ChunkProgress], None] | None = None,
                 runner: EpochRunner | None = None, **options: Any):
        self.config = (config or TrainConfig(**options)).validate()
        self.on_chunk = on_chunk
        self.runner = runner  # None: the passes and the epochs run in this process
        if runner is not None and self.config.threads > 1:
            raise ConfigError(f"threads={self.config.threads} trains on this machine's cores; under dask each "
                              "worker trains on one thread (leave threads at 1)")
        # the epochs in this process: one training thread, or several (Hogwild)
        self.local = LocalEpochs() if self.config.threads == 1 else ThreadedEpochs(self.config.threads)
        self.job: ChunkJob | None = None  # the per-chunk settings of the current run
        self.dataset: Dataset | None = None
        self.resumed_from: int | None = None  # the serial of the checkpoint this run continued from
        self.memory_plan: MemoryPlan | None = None  # how the memory budget is spent (None: no budget)
        self.run: Run | None = None  # the last fit's settings and its final state (to continue training from)
        self.init: LinearModel | None = None  # the model this run continues (config ``init``)
        self.state: TrainState | None = None
        self.encodings: dict[str, str] = {}  # each categorical column's encoding (choose_encodings)
        self._clock = CheckpointClock(self.config.checkpoint_every)  # restarted by each fit
        self._interrupted = False
        self.notes: list[str] = []  # lines for the user from the last set-up (heavy-tailed columns), said by the CLI
        self._records_before = 0  # the history's records when this fit started

    @property
    def kernel_calls(self) -> int:
        """The compiled chunk calls this trainer made in this process (none when a runner trains elsewhere)."""
        return self.local.chunks_trained

    # ---- set-up ------------------------------------------------------------------------------------------------
    def open(self, data: Any, target: str | None = None, features: Sequence[str] | None = None,
             exclude: Sequence[str] = ()) -> Dataset:
        """Open the data with units sized to the memory budget (``exclude``: columns left out of the features)."""
        dataset, self.memory_plan = open_training_data(self.config, data, target, features, exclude, self.init)
        return dataset

    def fit(self, data: Any, target: str | None = None, features: Sequence[str] | None = None,
            exclude: Sequence[str] = (), classes: list | None = None) -> LinearModel:
        """Train on ``data`` (anything ``open_dataset`` accepts) and return the model; ``exclude`` names columns
        (ids, partition keys) left out of the default features; ``classes``, the target's class labels when
        they are known already (no scan of the target)."""
        cfg = self.config
        if cfg.cache is not None:
            check_cache_dir(cfg.cache, "the cache directory")  # before the statistics pass, not after it
        self.init = load_init(cfg.init, cfg.storage_options) if cfg.init is not None else None
        if self.init is not None and features is None:
            features = self.init.input_columns  # the model's inputs, not every numeric column
        dataset = data if isinstance(data, Dataset) else self.open(data, target, features, exclude)
        if dataset.target is None:
            raise ConfigError("training needs a target column (target=...)")
        checkpoint = latest_checkpoint(cfg.checkpoint_dir, cfg.storage_options, fingerprint(dataset)) \
            if cfg.resume else None
        written_by = checkpoint.settings.get("threads", 1) if checkpoint is not None else cfg.threads
        if written_by != cfg.threads:  # one thread's resume is bit-exact only after one thread's epochs
            raise ConfigError(f"the checkpoint in {cfg.checkpoint_dir} was written with threads={written_by} and "
                              f"this run has threads={cfg.threads}; resume with --threads {written_by}")
        run, state = self._start(dataset, checkpoint, classes)
        self._clock = CheckpointClock(cfg.checkpoint_every, now=time.monotonic)
        self._records_before = len(state.history)
        with self._stop_on_ctrl_c():
            train_epochs(cfg, run, self.job, state, self.runner or self.local, after_chunk=self._after_chunk,
                         after_epoch=self._after_epoch)
        return self._model(run, state)

    def prepare(self, dataset: Dataset, classes: list | None = None) -> tuple[Run, TrainState]:
        """Set up a fresh run on ``dataset`` without training (``classes``: the class labels, when the data need
        not hold all of them); ``partial_fit`` trains its epochs one call at a time."""
        self.init = None
        return self._start(dataset, None, classes)

    def _start(self, dataset: Dataset, checkpoint: Any, classes: list | None) -> tuple[Run, TrainState]:
        """Set the run up (``RunSetup``) and keep it, its state and its per-chunk settings."""
        setup = RunSetup(self.config, self._scans(), self.init, self.memory_plan,
                         self.runner.settings() if self.runner is not None else {})
        run, state = setup.start(dataset, checkpoint, classes)
        self.dataset, self.resumed_from = dataset, setup.resumed_from
        self.notes = setup.notes
        self.encodings = setup.encodings
        self.run, self.state, self.job = run, state, chunk_job(self.config, run)
        return run, state

    def _scans(self) -> DataScans:
        if self.runner is not None:
            return self.runner  # the workers read the data
        # each concurrent pyarrow reader keeps ~80 MB of buffers of its own (measured, 8 MB row groups), which the
        # budget does not count: under a memory budget the statistics pass reads with one thread
        return LocalScans(workers=1 if self.config.memory_budget is not None else 2)

    def settings(self) -> dict:
        """The settings a checkpoint stores: the config's, and the epoch runner's (dask: workers, rounds)."""
        return {**self.config.to_dict(), **(self.runner.settings() if self.runner is not None else {})}

    def steps_per_epoch(self, dataset: Dataset) -> int:
        """Optimizer steps in one epoch (the first epoch's plan; other epochs differ by a few at most)."""
        return steps_per_epoch(self.config, dataset)

    # ---- the epochs' hooks -------------------------------------------------------------------------------------
    def _after_chunk(self, progress: EpochProgress, rss: float) -> None:
        """After a chunk (a dask round): a checkpoint when due, Ctrl-C's stop, progress."""
        cfg, state = self.config, self.state
        if self._interrupted or self._clock.due(state.chunks_done):
            progress.settle()  # several threads: the chunks they took trained and booked first
            self._write_checkpoint()
        if self._interrupted:
            where = "; resume with the same command and --resume" if cfg.checkpoint_dir and cfg.init is None else ""
            raise TrainingInterrupted(f"interrupted at epoch {state.epoch + 1}/{state.first_epoch + cfg.epochs}, "
                                      f"after {state.epoch_rows:,} of {progress.rows_total:,} rows{where}")
        if self.on_chunk is not None:
            previous = state.history[-1].get("validation_loss") if state.history else None
            self.on_chunk(ChunkProgress(state.epoch, state.first_epoch + cfg.epochs, state.epoch_rows,
                                        progress.rows_total, progress.meter.rows_per_s,
                                        state.epoch_loss_sum / max(state.epoch_rows, 1), rss, previous))

    def _after_epoch(self, record: dict) -> None:
        """After an epoch is booked: its checkpoint, then its record to the progress callback."""
        self._write_checkpoint()
        if self.on_chunk is not None:
            cfg, state = self.config, self.state
            self.on_chunk(ChunkProgress(state.epoch - 1, state.first_epoch + cfg.epochs, record["rows"],
                                        record["rows"], record["rows_per_s"], record["loss"],
                                        record["peak_rss_mb"], record.get("validation_loss"), record))

    # ---- checkpoints, the model --------------------------------------------------------------------------------
    def _write_checkpoint(self) -> None:
        self._clock.written()
        if self.config.checkpoint_dir:  # the data's fingerprint reads the files: only when it is stored
            save_checkpoint(self.config, self.run, self.state, fingerprint(self.dataset), self.settings())

    def _model(self, run: Run, state: TrainState) -> LinearModel:
        # the records this fit added (a resumed or continued run's history holds the earlier ones too)
        summary = {"resumed_from": self.resumed_from, "epochs_run": len(state.history) - self._records_before,
                   "continued_from_epoch": state.first_epoch if self.init is not None else None}
        if self.notes:  # kept with the model: a dask run's client says them once the model is back
            summary["notes"] = list(self.notes)
        config = None
        if self.runner is not None:
            summary.update(self.runner.settings())
            config = {"distributed": True}
        # training on this state is over: the model takes the factor block without a copy (whoever trains on
        # from here, the estimators' sessions, copies the state first)
        return assemble_model(self.config, run, state, self.dataset.target, run.train.n_rows, summary, config,
                              share_factors=True)

    @contextlib.contextmanager
    def _stop_on_ctrl_c(self) -> Iterator[None]:
        """Turn Ctrl-C (SIGINT) into a stop after the current chunk (with a checkpoint if asked)."""
        self._interrupted = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum: int, frame: Any) -> None:
            self._interrupted = True

        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def fit(data: Any, target: str | None = None, model: str = "logistic", features: Sequence[str] | None = None,
        on_chunk: Callable[[ChunkProgress], None] | None = None, exclude: Sequence[str] = (),
        **options: Any) -> LinearModel:
    """Train a model on a Parquet dataset streamed from disk (see ``TrainConfig`` for the options)."""
    return Trainer(model=model, on_chunk=on_chunk, **options).fit(data, target=target, features=features,
                                                                  exclude=exclude)
