"""Dynamic batching, one batcher per model (MLServer's algorithm, on the event loop).

Requests join a bounded queue. A batch is collected (whole requests, up to max_batch_size rows), run
once in a worker thread, and its output rows are fanned back to each waiting future (each requester
gets exactly its own rows), or the error to every future of that batch and no other.

When to start a batch:
- an idle model starts at once with whatever is queued (lowest latency at low load); requests that
  arrive while a batch runs wait, and the next batch starts as soon as the previous one finishes with
  everything queued by then, so batches grow with the load by themselves;
- while another batch of the same model is running (max_concurrent_batches > 1), or always with
  `wait_when_idle` (Triton's policy), a partial batch waits up to max_queue_delay for more rows.

The queue is bounded: when it is full, `submit` raises ServerBusy at once (503 + Retry-After).
Collecting a batch costs no thread hop per request: only the batch goes to a batch thread.

Each batcher runs its batches on threads of its own (max_concurrent_batches of them): with one thread per
model, every batch of a model runs on the same warm thread, and models never wait for each other's
threads. (A pool shared by all models hands consecutive batches to alternating threads: a thread wait
queue is first-in first-out. Measured on lenet5_digits JSON requests, a shared pool of 2 gave 7,100-7,450
requests/s, one thread 8,600.)

A batch thread takes a batch from a queue, runs it and hands the outcome straight to `_finish` on the
event loop (`call_soon_threadsafe`), then waits for the next. An executor's `run_in_executor` does the
same through two futures, one more turn of the event loop and more Python on both threads, each step of
it slower after a run has emptied the caches: measured on the 2-core development machine, binary infer
at batch 1, the latency the service adds fell by about 0.1 ms with the batch threads (resnet18: 1.141
against 1.234 ms, mobilenet_v2: 1.034 against 1.166 ms, medians of six alternating rounds).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.errors import BadRequest, InferenceFailed, ModelNotReady, ServerBusy, ServingError

RunFn = Callable[[np.ndarray], Sequence[np.ndarray]]
"""Runs one batch (rows along axis 0) and returns the outputs, each with the same number of rows."""


class BatchObserver(Protocol):
    def on_batch(self, rows: int, input_ns: int, infer_ns: int, output_ns: int, ok: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One requester's share of a batch."""

    outputs: list[np.ndarray]
    queue_ns: int
    """From submit to the start of its batch."""
    input_ns: int
    """Its batch's stacking of inputs."""
    infer_ns: int
    """Its batch's onnxruntime run."""
    batch_size: int

    @property
    def compute_ns(self) -> int:
        return self.input_ns + self.infer_ns


_Outcome = tuple[Sequence[np.ndarray], int, int] | BaseException
"""What a batch thread hands back: the outputs, the stacking and run nanoseconds; or what the run raised."""


@dataclass(slots=True)
class _Pending:
    x: np.ndarray
    rows: int
    future: asyncio.Future
    enqueued_ns: int


class Batcher:
    def __init__(
        self,
        name: str,
        run: RunFn,
        *,
        max_batch_size: int,
        max_queue_delay_s: float = 0.0,
        max_queue_size: int = 64,
        max_concurrent_batches: int = 1,
        wait_when_idle: bool = False,
        observer: BatchObserver | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue_size < 1 or max_concurrent_batches < 1:
            raise ValueError("max_batch_size, max_queue_size and max_concurrent_batches must be >= 1")
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_queue_delay_ns = int(max_queue_delay_s * 1e9)
        self.max_queue_size = max_queue_size
        self.max_concurrent_batches = max_concurrent_batches
        self.wait_when_idle = wait_when_idle
        self._run = run
        self._jobs: queue.SimpleQueue[tuple[list[_Pending], int] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._observer = observer
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._idle: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- state ------------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Requests waiting (not counting running batches)."""
        return len(self._queue)

    @property
    def running(self) -> int:
        return self._running

    @property
    def full(self) -> bool:
        return len(self._queue) >= self.max_queue_size

    def check_capacity(self, entries: int = 1) -> None:
        """Raise what `submit` (or `submit_all` of `entries` arrays) would raise for lack of room, before the
        caller does any work."""
        if self._closed:
            raise ModelNotReady(f"model '{self.name}' is unloading")
        if len(self._queue) + entries > self.max_queue_size:
            raise ServerBusy(
                f"model '{self.name}' is overloaded: {len(self._queue)} requests queued (max {self.max_queue_size})"
            )

    # --- requests ---------------------------------------------------------------------------------

    async def submit(self, x: np.ndarray) -> BatchResult:
        """Queue `x` (rows along axis 0) and wait for its rows of the outputs."""
        self._check_rows(x)
        self.check_capacity()
        future = self._enqueue(x)
        self._pump()
        return await future

    async def submit_all(self, xs: Sequence[np.ndarray]) -> list[BatchResult]:
        """Queue several arrays as separate entries, all or none (ServerBusy when the queue has no room for
        every one), and wait for all their rows. When one fails, the others still queued are withdrawn."""
        for x in xs:
            self._check_rows(x)
        self.check_capacity(len(xs))
        futures = [self._enqueue(x) for x in xs]

        def withdraw_the_rest(future: asyncio.Future) -> None:
            if not future.cancelled() and future.exception() is not None:
                for other in futures:
                    other.cancel()  # one still queued is dropped unrun (`_take`); one done or running is kept

        for future in futures:
            future.add_done_callback(withdraw_the_rest)  # before gather's own: the error is what gather raises
        self._pump()
        return list(await asyncio.gather(*futures))

    def _check_rows(self, x: np.ndarray) -> None:
        rows = int(x.shape[0])
        if not 1 <= rows <= self.max_batch_size:
            raise BadRequest(f"batch size {rows} is outside 1..{self.max_batch_size} (max_batch_size of '{self.name}')")

    def _enqueue(self, x: np.ndarray) -> asyncio.Future:
        loop = self._loop or self._bind_loop()
        future = loop.create_future()
        rows = int(x.shape[0])
        self._queue.append(_Pending(x, rows, future, time.perf_counter_ns()))
        self._queued_rows += rows
        return future

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        for i in range(self.max_concurrent_batches):
            thread = threading.Thread(target=self._work, name=f"batch-{self.name}-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self._loop

    # --- the algorithm ----------------------------------------------------------------------------

    def _pump(self) -> None:
        """Start as many batches as the policy allows now; arm a timer for a batch that may wait. Marks the
        batcher idle when nothing runs and nothing is left queued (requests withdrawn while queued included,
        which `_take` drops here)."""
        while self._running < self.max_concurrent_batches and self._queue:
            if (
                self._queued_rows < self.max_batch_size
                and self.max_queue_delay_ns > 0
                and (self._running > 0 or self.wait_when_idle)
                and not self._closed
            ):
                wait_ns = self._queue[0].enqueued_ns + self.max_queue_delay_ns - time.perf_counter_ns()
                if wait_ns > 0:
                    if self._timer is None:
                        self._timer = self._loop.call_later(wait_ns / 1e9, self._on_timer)
                    return
            batch = self._take()
            if batch:
                self._start(batch)
        if not self._running and not self._queue:
            self._idle.set()

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    def _take(self) -> list[_Pending]:
        """Whole requests from the head of the queue, up to max_batch_size rows; abandoned ones are dropped."""
        batch: list[_Pending] = []
        rows = 0
        queue = self._queue
        while queue and rows + queue[0].rows <= self.max_batch_size:
            item = queue.popleft()
            self._queued_rows -= item.rows
            if item.future.done():  # the requester went away (cancelled)
                continue
            batch.append(item)
            rows += item.rows
        return batch

    def _start(self, batch: list[_Pending]) -> None:
        self._running += 1
        self._idle.clear()
        self._jobs.put((batch, time.perf_counter_ns()))

    def _work(self) -> None:
        """A batch thread: runs the batches `_start` queues until `close` sends None."""
        jobs = self._jobs
        while (job := jobs.get()) is not None:
            batch, started = job
            outcome: _Outcome
            try:
                outcome = self._execute([item.x for item in batch])
            except BaseException as exc:  # reaches the batch's requesters, whatever it is
                outcome = exc
            try:
                self._loop.call_soon_threadsafe(self._finish, batch, started, outcome)
            except RuntimeError:  # the event loop is closed: nobody is waiting any more
                return

    def _execute(self, arrays: list[np.ndarray]) -> tuple[Sequence[np.ndarray], int, int]:
        """In a batch thread: stack the rows, run the model once."""
        t0 = time.perf_counter_ns()
        x = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        t1 = time.perf_counter_ns()
        outputs = self._run(x)
        return outputs, t1 - t0, time.perf_counter_ns() - t1

    def _finish(self, batch: list[_Pending], started: int, outcome: _Outcome) -> None:
        t0 = time.perf_counter_ns()
        rows = sum(item.rows for item in batch)
        self._running -= 1
        input_ns = infer_ns = 0
        if isinstance(outcome, BaseException):
            error: BaseException | None = outcome
        else:
            outputs, input_ns, infer_ns = outcome
            error = None
            bad = [o for o in outputs if o.shape[:1] != (rows,)]
            if bad:
                error = InferenceFailed(
                    f"model '{self.name}' returned {bad[0].shape[0] if bad[0].ndim else 0} rows for a batch of {rows}"
                )
        if error is None:
            offset = 0
            for item in batch:
                if not item.future.done():
                    share = [o[offset : offset + item.rows] for o in outputs]
                    item.future.set_result(BatchResult(share, started - item.enqueued_ns, input_ns, infer_ns, rows))
                offset += item.rows
        else:
            if not isinstance(error, ServingError):
                error = InferenceFailed(f"inference failed for model '{self.name}': {error}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
        output_ns = time.perf_counter_ns() - t0
        if self._observer is not None:
            self._observer.on_batch(rows, input_ns, infer_ns, output_ns, error is None)
        self._pump()

    # --- shutdown ---------------------------------------------------------------------------------

    async def close(self) -> None:
        """Take no new requests; finish everything queued and running."""
        self._closed = True
        while self._queue or self._running:
            if self._idle is None:
                break
            self._pump()
            await self._idle.wait()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _ in self._threads:
            self._jobs.put(None)
        self._threads.clear()
