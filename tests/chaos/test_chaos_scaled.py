"""The chaos suite's scale-out shape, bounded for CI: a three-node NATS cluster (streams of
three replicas), two api processes on one port, two sagas workers, relay and projector each
with a hot standby, billing and notifier (`cinderblock.chaos.rig.SCALED`), under the mixed
load of `cinderblock.chaos.load`. The node leading the event stream and the active relay
are killed -9 mid-run, one at a time: someone else must take over (a new stream leader, the
standby relay holding the lock) and every invariant of `cinderblock.chaos.checks` must hold
after each. The full run (also the active projector, a sagas worker, an api process) is
`python ops/chaos/run.py --shape scaled` (ops/chaos/README.md)."""

from __future__ import annotations

import pytest

from cinderblock.chaos.run import render, run_chaos

# The whole system over HTTP; it starts its own servers (whatever CINDERBLOCK_* names).
pytestmark = pytest.mark.e2e

FAULTS = ("nats-node", "relay-active")


async def test_failovers_under_load_lose_nothing_and_double_nothing() -> None:
    # Progress goes to stdout: pytest shows it with a failure.
    results = await run_chaos(
        FAULTS, shape="scaled", clients=2, volumes=2, outage=1.0, notifier=False, say=print
    )
    table = render(results, "bounded chaos run, scaled shape")
    print(table)
    assert [r.fault for r in results] == list(FAULTS)
    node, relay = results
    assert node.target.startswith("nats:n"), table
    assert relay.target in ("relay-1", "relay-2"), table
    for result in results:
        assert result.killed_at is not None, table
        assert result.ok > 0, table
        # Someone took the killed one's part while it was down: not the one restarted.
        assert result.failover not in ("-", "none"), table
        assert result.passed, table
        assert result.self_exits == 0, table
    assert relay.failover.startswith(({"relay-1": "relay-2", "relay-2": "relay-1"})[relay.target])
