"""bench/serve.py: how it reads the server's event loop, and the load it picks by default."""

from __future__ import annotations

import os
import time

from bench.serve import default_concurrency, loop_schedstat


def test_loop_schedstat_counts_the_main_threads_time_on_a_cpu():
    """Its time on a CPU is the main thread's CPU time (the same clock, whatever else the machine runs)."""
    pid = os.getpid()  # pytest runs the tests on the process's main thread, as uvicorn runs its loop
    run0, wait0 = loop_schedstat(pid)
    cpu0 = time.thread_time()
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass
    cpu = time.thread_time() - cpu0
    run1, wait1 = loop_schedstat(pid)
    assert cpu > 0.05
    assert abs((run1 - run0) - cpu) < 0.02 + 0.1 * cpu
    assert wait1 >= wait0 >= 0.0


def test_loop_schedstat_of_a_process_that_is_gone_is_zero():
    assert loop_schedstat(2**22 + 12345) == (0.0, 0.0)


def test_default_concurrency_lets_a_best_size_batch_queue_behind_the_running_one():
    assert default_concurrency(16) == 32  # resnet18
    assert default_concurrency(64) == 128  # lenet5_digits
    assert default_concurrency(1) == 16
    assert default_concurrency(128) == 128  # the cap: at 256 the bare FastAPI endpoint slowed down (docs/benchmarks.md)
