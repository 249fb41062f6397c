"""The chaos suite, bounded for CI: the production shape (one process per service, embedded
PostgreSQL and nats-server under a fresh data dir) under the mixed load of
`cinderblock.chaos.load`, with the sagas service, PostgreSQL and nats-server killed -9
mid-run, one at a time, and started again. Every invariant of `cinderblock.chaos.checks`
must hold after each: no acknowledged action lost, nothing applied twice, nothing stuck,
verify identical. The full run (every service kind, PostgreSQL, nats-server) is
`python ops/chaos/run.py` (ops/chaos/README.md); the scale-out shape's failovers are
tests/chaos/test_chaos_scaled.py."""

from __future__ import annotations

import pytest

from cinderblock.chaos.run import render, run_chaos

# The whole system over HTTP; it starts its own servers (whatever CINDERBLOCK_* names).
pytestmark = pytest.mark.e2e

FAULTS = ("sagas", "postgres", "nats")


async def test_kill_9_mid_load_loses_nothing_and_doubles_nothing() -> None:
    # Progress goes to stdout: pytest shows it with a failure.
    results = await run_chaos(FAULTS, clients=4, volumes=2, outage=1.0, say=print)
    table = render(results, "bounded chaos run")
    print(table)
    assert [r.fault for r in results] == list(FAULTS)
    for result in results:
        assert result.killed_at is not None, table
        assert result.ok > 0, table
        assert result.passed, table
        # Every service waits out what was killed: none exits and needs a restart.
        assert result.self_exits == 0, table
