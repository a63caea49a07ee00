"""bench/serve.py's reading of how the server's event loop spent a scenario."""

from __future__ import annotations

import os
import time

from bench.serve import loop_schedstat


def test_loop_schedstat_counts_the_main_threads_time_on_a_cpu():
    pid = os.getpid()  # pytest runs the tests on the process's main thread, as uvicorn runs its loop
    run0, wait0 = loop_schedstat(pid)
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass
    run1, wait1 = loop_schedstat(pid)
    assert 0.15 <= run1 - run0 <= 0.45
    assert wait1 >= wait0 >= 0.0


def test_loop_schedstat_of_a_process_that_is_gone_is_zero():
    assert loop_schedstat(2**22 + 12345) == (0.0, 0.0)
