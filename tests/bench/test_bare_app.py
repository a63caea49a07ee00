"""bench/bare_app.py's stand-ins for the model run behind the HTTP floors."""

from __future__ import annotations

from bench.bare_app import sleeper


def test_sleeper_reports_the_time_it_slept_as_the_runs_compute():
    ns = sleeper(5.0)()
    assert 5_000_000 <= ns < 500_000_000
