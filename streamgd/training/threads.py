"""N training threads on one epoch's plan (``--threads N``): Hogwild (Niu et al., 2011) on one machine.

One reader (the epoch's ``ChunkStream``, its prefetch thread, the epoch cache) deals the plan's chunks, in plan
order, to whichever training thread is free; each thread trains its chunk with the one compiled chunk call
(``chunk_step.train_on_chunk``) straight into the shared parameter and optimizer-state arrays, without locks. The
compiled loops release the GIL (``streamgd.kernels.jit``) and allocate their scratch per call, so each thread
has its own. A sparse batch gathers the coordinates its rows touch, steps them and writes them back: two threads
touching the same coordinate at once may lose one of the two steps, which Hogwild shows costs little when the
rows are sparse. The dense coefficients and intercepts are touched by every batch of every thread, so they take
most of the lost steps. One reader rather than a stream per thread: a stream per thread would gather the same
chunks with the same CPU on the same cores; scripts/bench_threads.py measures the reader's share of a row's CPU.

What is promised with N > 1 (tests/test_threads.py):

* every row of an epoch's plan is trained exactly once per epoch, also across an interrupt and ``--resume``;
* the optimizer's step numbers (and so the schedule's rates) of an epoch are those of the one-thread run, dealt
  to the chunks in the order threads take them; the epoch's sums (loss, rows, rows left out) are the same sums;
* a non-finite batch is never applied (each thread's kernel checks its own batch before writing it back) and a
  bad row stops training with the same error as one thread's, naming file, row group and row;
* not bit-identity: the interleaving of the threads' writes differs from run to run, so two runs with the same
  seed differ in the last digits and beyond (the holdout loss stays within a small bound of one thread's).

Checkpoints: the main thread books each chunk a thread finished (the epoch's sums, the hooks). Before a
checkpoint the hook calls ``EpochProgress.settle``: no thread takes a new chunk until every chunk taken is trained
and booked, so the cursor (the plan's first ``next_chunk`` chunks) is exact and a resume trains every row left
exactly once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..data.shuffle import make_plan
from .chunk_step import ChunkJob, batches_in, open_stream, train_on_chunk
from .config import TrainConfig
from .epoch import EpochProgress, ReadFigures
from .state import Run, TrainState

__all__ = ["ThreadedEpochs"]


@dataclass
class _Trained:
    """A chunk a thread trained: its sums (a state of its own that shares the parameter arrays) and its rows."""

    sums: TrainState
    steps: int
    rows: int


_EXITED = object()  # a thread's last word on the queue


class ThreadedEpochs:
    """An epoch's chunks from this process's reader, dealt to ``n_threads`` training threads (Hogwild)."""

    def __init__(self, n_threads: int) -> None:
        self.n_threads = n_threads
        self.chunks_trained = 0  # compiled chunk calls this process made
        self.trained_by: dict[int, int] = {}  # chunks each thread trained in the last epoch (thread number: count)

    def train_epoch(self, cfg: TrainConfig, run: Run, job: ChunkJob, state: TrainState,
                    progress: EpochProgress) -> dict:
        plan = make_plan(run.train.units, cfg.shuffle, seed=cfg.seed, epoch=state.epoch)
        progress.rows_total, progress.n_chunks = plan.n_rows, len(plan.steps)
        stream = open_stream(job, plan, state.next_chunk, progress.quality)
        with stream:
            chunks = iter(stream)
            try:
                epoch = _SharedEpoch(job, state, chunks, run.schedule, progress)
                self.trained_by = epoch.run(self.n_threads)
                self.chunks_trained += sum(self.trained_by.values())
                cpu = [round(epoch.cpu_seconds.get(i, 0.0), 4) for i in range(self.n_threads)]
            finally:
                chunks.close()  # the stream's generator ends here, not when it is collected
        progress.reads.add(ReadFigures.of_stream(stream))
        # each training thread's CPU seconds: beside the epoch's, what the reader and the hand-offs took
        return {"threads": self.n_threads, "training_threads_cpu_seconds": cpu}


class _SharedEpoch:
    """One epoch's threads: they take chunks and step numbers under one lock and train without it; the calling
    (main) thread books what they trained and runs the hooks."""

    def __init__(self, job: ChunkJob, state: TrainState, chunks: Iterator[Any], lr_at: Any,
                 progress: EpochProgress) -> None:
        self.job, self.state, self.chunks, self.lr_at, self.progress = job, state, chunks, lr_at, progress
        self.lock = threading.Condition()
        self.step = state.step  # the next step number to deal (taken chunks' steps are reserved)
        self.taken = self.booked = 0
        self.paused = self.stopped = False
        self.done: queue.Queue = queue.Queue()
        self.exited = 0
        self.last_rows = 0  # the rows of the chunk booked last
        self.counts: dict[int, int] = {}
        self.cpu_seconds: dict[int, float] = {}  # each training thread's CPU time (its own, not the process's)

    def run(self, n_threads: int) -> dict[int, int]:
        """Train the epoch's chunks on ``n_threads`` threads; return the chunks each trained."""
        previous, self.progress.settle = self.progress.settle, self.settle
        threads = [threading.Thread(target=self.work, args=(i,), name=f"streamgd-train-{i}", daemon=True)
                   for i in range(n_threads)]
        for thread in threads:
            thread.start()
        try:
            while self.exited < n_threads:
                if self.take_one():
                    self.progress.chunk_done(self.last_rows)  # the hooks: progress, checkpoints, Ctrl-C
                    self.resume()
        finally:
            with self.lock:
                self.stopped = True
                self.lock.notify_all()
            for thread in threads:
                thread.join()
            self.progress.settle = previous
        return self.counts

    def work(self, number: int) -> None:
        """A training thread: take the next chunk and its step numbers, train it, hand it to the main thread."""
        started = time.thread_time()
        try:
            while True:
                with self.lock:
                    while self.paused and not self.stopped:
                        self.lock.wait()
                    if self.stopped:
                        return
                    chunk = next(self.chunks, None)  # the reader's hand-off (a cache gather finished) in plan order
                    if chunk is None:
                        return
                    steps = batches_in(chunk.n_rows, self.job.batch_size)  # full batch takes one thread
                    first, self.step = self.step, self.step + steps
                    self.taken += 1
                    self.counts[number] = self.counts.get(number, 0) + 1
                sums = TrainState(params=self.state.params, opt_state=self.state.opt_state, step=first,
                                  epoch=self.state.epoch, run_id=self.state.run_id)
                train_on_chunk(self.job, sums, chunk, self.lr_at)
                self.done.put(_Trained(sums, steps, chunk.n_rows))
                del chunk
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            self.done.put(exc)
        finally:
            self.cpu_seconds[number] = time.thread_time() - started
            self.done.put(_EXITED)

    def take_one(self) -> bool:
        """Book the next thing a thread handed over; True when it was a trained chunk."""
        item = self.done.get()
        if item is _EXITED:
            self.exited += 1
            return False
        if isinstance(item, BaseException):
            raise item
        state = self.state
        state.add_sums(item.sums)
        state.step += item.steps
        state.next_chunk += 1
        state.chunks_done += 1
        self.booked += 1
        self.last_rows = item.rows
        return True

    def settle(self) -> None:
        """Pause the threads until every chunk taken is trained and booked: the state is then a cursor a
        checkpoint can store (the plan's first ``next_chunk`` chunks done, nothing else)."""
        with self.lock:
            self.paused = True
        while True:
            with self.lock:
                if self.booked == self.taken:
                    return
            if self.take_one():
                self.progress.meter.add(self.last_rows)

    def resume(self) -> None:
        with self.lock:
            if self.paused:
                self.paused = False
                self.lock.notify_all()
