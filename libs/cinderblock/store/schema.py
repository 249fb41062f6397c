"""DDL of the event store. The events table is also the outbox the relay follows."""

from __future__ import annotations

EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS events (
    position bigint GENERATED ALWAYS AS IDENTITY,
    tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    originator_id uuid NOT NULL,
    originator_version integer NOT NULL,
    topic text NOT NULL,
    state bytea NOT NULL,
    meta jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (originator_id, originator_version)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_tx_position ON events (tx_id, position);
"""

# Every append NOTIFYs this channel, so tailing readers (relay, projector) wake at once.
EVENTS_CHANNEL = "cinderblock_events"
