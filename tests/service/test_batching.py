"""The batcher: batches form under concurrency, each requester gets its own rows, errors reach exactly
the requests of the failing batch, the queue is bounded, close drains."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from service.batching import Batcher
from service.errors import BadRequest, InferenceFailed, ModelNotReady, ServerBusy


class Model:
    """Doubles its input; records the batch sizes it ran; can be slowed down or made to fail."""

    def __init__(self, delay: float = 0.0, fail_when=None) -> None:
        self.delay = delay
        self.fail_when = fail_when
        self.batches: list[int] = []
        self.threads: set[int] = set()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, x: np.ndarray):
        self.gate.wait(5)
        self.batches.append(x.shape[0])
        self.threads.add(threading.get_ident())
        if self.delay:
            time.sleep(self.delay)
        if self.fail_when is not None and self.fail_when(x):
            raise RuntimeError("boom")
        return [x * 2, x.sum(axis=1)]


class Observer:
    def __init__(self) -> None:
        self.batches = []

    def on_batch(self, rows, input_ns, infer_ns, output_ns, ok):
        self.batches.append((rows, ok))


def run(coro):
    return asyncio.run(coro)


async def hold_a_batch(batcher: Batcher, model: Model) -> asyncio.Future:
    """Start one request whose batch then runs held at the model's closed gate: the next requests queue."""
    model.gate.clear()
    running = asyncio.ensure_future(batcher.submit(np.ones((1, 1), np.float32)))
    await asyncio.sleep(0.05)
    return running


def test_concurrent_requests_share_batches_and_get_their_own_rows():
    model, observer = Model(delay=0.02), Observer()
    batcher = Batcher("m", model, max_batch_size=8, observer=observer)

    async def main():
        xs = [np.full((1 + i % 3, 2), i, np.float32) for i in range(20)]
        results = await asyncio.gather(*(batcher.submit(x) for x in xs))
        for x, r in zip(xs, results, strict=True):
            np.testing.assert_array_equal(r.outputs[0], x * 2)
            np.testing.assert_array_equal(r.outputs[1], x.sum(axis=1))
            assert r.batch_size >= x.shape[0]
        return results

    results = run(main())
    assert max(model.batches) > 1, model.batches
    assert all(b <= 8 for b in model.batches)
    assert sum(model.batches) == sum(1 + i % 3 for i in range(20))
    assert [rows for rows, ok in observer.batches] == model.batches
    assert any(r.queue_ns > 0 for r in results)


def test_an_idle_model_starts_at_once():
    model = Model()
    batcher = Batcher("m", model, max_batch_size=8, max_queue_delay_s=10.0)

    async def main():
        return await asyncio.wait_for(batcher.submit(np.ones((1, 2), np.float32)), 5)

    assert run(main()).batch_size == 1


def test_wait_when_idle_fills_a_batch_within_the_delay():
    model = Model()
    batcher = Batcher("m", model, max_batch_size=4, max_queue_delay_s=5.0, wait_when_idle=True)

    async def main():
        first = asyncio.ensure_future(batcher.submit(np.ones((1, 2), np.float32)))
        await asyncio.sleep(0.05)
        assert not first.done()  # waiting for more rows
        rest = [batcher.submit(np.ones((1, 2), np.float32)) for _ in range(3)]
        return await asyncio.gather(first, *rest)

    results = run(main())
    assert model.batches == [4]
    assert {r.batch_size for r in results} == {4}


def test_an_error_fails_only_its_own_batch():
    model = Model(fail_when=lambda x: (x < 0).any())
    batcher = Batcher("m", model, max_batch_size=2)
    model.gate.clear()

    async def main():
        blocker = asyncio.ensure_future(batcher.submit(np.ones((2, 1), np.float32)))
        await asyncio.sleep(0.05)  # running (blocked on the gate): the next ones queue
        bad = [asyncio.ensure_future(batcher.submit(np.full((1, 1), -1, np.float32))) for _ in range(2)]
        good = [asyncio.ensure_future(batcher.submit(np.ones((1, 1), np.float32))) for _ in range(2)]
        await asyncio.sleep(0.01)
        model.gate.set()
        await blocker
        bad_results = await asyncio.gather(*bad, return_exceptions=True)
        good_results = await asyncio.gather(*good)
        return bad_results, good_results

    bad_results, good_results = run(main())
    assert model.batches == [2, 2, 2]
    assert all(isinstance(e, InferenceFailed) and "boom" in str(e) for e in bad_results)
    assert all(r.outputs[0].tolist() == [[2.0]] for r in good_results)


def test_a_full_queue_refuses_at_once():
    model = Model()
    batcher = Batcher("m", model, max_batch_size=1, max_queue_size=2)

    async def main():
        running = await hold_a_batch(batcher, model)
        queued = [asyncio.ensure_future(batcher.submit(np.ones((1, 1), np.float32))) for _ in range(2)]
        await asyncio.sleep(0)
        assert batcher.full
        t0 = time.perf_counter()
        with pytest.raises(ServerBusy) as info:
            await batcher.submit(np.ones((1, 1), np.float32))
        assert time.perf_counter() - t0 < 1.0
        assert info.value.headers["Retry-After"].isdigit()
        model.gate.set()
        await asyncio.gather(running, *queued)
        return (await batcher.submit(np.ones((1, 1), np.float32))).batch_size

    assert run(main()) == 1


def test_batches_larger_than_the_max_are_refused():
    batcher = Batcher("m", Model(), max_batch_size=4)
    with pytest.raises(BadRequest, match="batch size 5"):
        run(batcher.submit(np.ones((5, 1), np.float32)))


def test_close_drains_and_then_refuses():
    model = Model(delay=0.05)
    batcher = Batcher("m", model, max_batch_size=1)
    before = threading.active_count()

    async def main():
        pending = [asyncio.ensure_future(batcher.submit(np.ones((1, 1), np.float32))) for _ in range(3)]
        await asyncio.sleep(0)
        assert threading.active_count() == before + 1  # its batch thread
        await batcher.close()
        assert all(p.done() and not p.exception() for p in pending)
        with pytest.raises(ModelNotReady):
            await batcher.submit(np.ones((1, 1), np.float32))

    run(main())
    assert model.batches == [1, 1, 1]
    assert len(model.threads) == 1  # every batch on the same thread
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before  # close stopped it


def test_concurrent_batches_run_on_threads_of_their_own():
    both_running = threading.Barrier(2, timeout=5)  # broken, and both batches failed, if they ran in turn
    threads = set()

    def run_model(x):
        threads.add(threading.get_ident())
        both_running.wait()
        return [x]

    batcher = Batcher("m", run_model, max_batch_size=1, max_concurrent_batches=2)

    async def main():
        results = await asyncio.gather(*(batcher.submit(np.ones((1, 1), np.float32)) for _ in range(2)))
        await batcher.close()
        return results

    assert all(r.batch_size == 1 for r in run(main()))
    assert len(threads) == 2


def test_an_exception_that_is_no_error_still_reaches_its_requesters():
    def run_model(x):
        raise KeyboardInterrupt

    batcher = Batcher("m", run_model, max_batch_size=1)

    async def main():
        with pytest.raises(InferenceFailed, match="inference failed for model 'm'"):
            await asyncio.wait_for(batcher.submit(np.ones((1, 1), np.float32)), 5)
        await batcher.close()

    run(main())


def test_abandoned_requests_are_skipped():
    model = Model()
    batcher = Batcher("m", model, max_batch_size=4)

    async def main():
        running = await hold_a_batch(batcher, model)
        gone = asyncio.ensure_future(batcher.submit(np.ones((2, 1), np.float32)))
        kept = asyncio.ensure_future(batcher.submit(np.ones((1, 1), np.float32)))
        await asyncio.sleep(0)
        gone.cancel()
        model.gate.set()
        await asyncio.gather(running, kept)

    run(main())
    assert model.batches == [1, 1]


def test_close_returns_when_a_queued_request_was_withdrawn():
    # A request withdrawn from the queue while a batch runs leaves nothing to run: the batcher is idle after
    # the batch, and close (unload, shutdown) must see that rather than wait for ever.
    model = Model()
    batcher = Batcher("m", model, max_batch_size=1)

    async def main():
        running = await hold_a_batch(batcher, model)
        gone = asyncio.ensure_future(batcher.submit(np.ones((1, 1), np.float32)))
        await asyncio.sleep(0)
        gone.cancel()
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0.05)
        model.gate.set()
        await asyncio.wait_for(closing, 5)
        return (await running).batch_size

    assert run(main()) == 1
    assert model.batches == [1]


def test_submit_all_queues_all_or_none():
    model = Model()
    batcher = Batcher("m", model, max_batch_size=1, max_queue_size=3)

    async def main():
        running = await hold_a_batch(batcher, model)
        queued = asyncio.ensure_future(batcher.submit(np.ones((1, 1), np.float32)))
        await asyncio.sleep(0)
        with pytest.raises(ServerBusy):  # three more do not fit beside the one queued
            await batcher.submit_all([np.full((1, 1), v, np.float32) for v in (1, 2, 3)])
        assert batcher.queued == 1  # and none of them was queued
        both = asyncio.ensure_future(batcher.submit_all([np.full((1, 1), v, np.float32) for v in (4, 5)]))
        model.gate.set()
        await asyncio.gather(running, queued)
        return [r.outputs[0][0, 0] for r in await both]

    assert run(main()) == [8.0, 10.0]
    assert model.batches == [1, 1, 1, 1]


def test_submit_all_withdraws_the_rest_when_one_fails():
    model = Model(fail_when=lambda x: x[0, 0] == 3)
    batcher = Batcher("m", model, max_batch_size=1)
    ran = []

    def record(x):
        ran.append(float(x[0, 0]))
        return model(x)

    batcher._run = record

    async def main():
        running = await hold_a_batch(batcher, model)
        parts = asyncio.ensure_future(batcher.submit_all([np.full((1, 1), v, np.float32) for v in (2, 3, 4, 5, 6)]))
        await asyncio.sleep(0)
        model.gate.set()
        with pytest.raises(InferenceFailed):
            await parts
        await running
        await batcher.close()

    run(main())
    # 4 may already have started when 3 failed (the next batch starts at once); 5 and 6 never ran
    assert ran[:3] == [1.0, 2.0, 3.0] and 5.0 not in ran and 6.0 not in ran
