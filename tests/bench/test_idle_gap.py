"""bench/idle_gap.py: its probes take the sleep off what they report, and the script prints its table."""

from __future__ import annotations

import numpy as np

from bench import idle_gap


def test_socket_round_trip_reports_the_latency_less_the_servers_sleep():
    server = idle_gap.SocketServer(65536)
    client = idle_gap.SocketClient(server.port, 65536)
    try:
        slept = client.added_ms(20.0, seconds=0)  # at least 5 round trips
        quick = client.added_ms(0.0, seconds=0)
    finally:
        client.close()
        server.close()
    assert len(slept) >= 5 and len(quick) >= 5
    # the 20 ms sleep is taken off: what remains is the round trip's own time, positive and well under it
    assert np.all(slept > 0) and np.median(slept) < 15
    assert np.all(quick > 0) and np.median(quick) < 15


def test_copy_times_each_copy_after_the_gap():
    times = idle_gap.copy_us(1 << 16, 1.0, seconds=0)
    assert len(times) >= 5 and np.all(times > 0) and np.all(times < 1000)  # a copy, not the 1 ms sleep


def test_prints_each_probe_by_gap_with_its_ratio_to_no_gap(capsys):
    assert idle_gap.main(["--bytes", "8192", "--gaps", "2", "--seconds", "0.4", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    for probe in ("copy", "sockets", "ASGI"):
        lines = [line for line in out.splitlines() if line.strip().startswith(probe)]
        assert [line.split()[1:3] for line in lines] == [["no", "gap"], ["after", "2"]], out
        assert "x 1.00" in lines[0]
