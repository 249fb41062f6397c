"""The billing consumer's tables: one row per billed aggregate (a volume or a snapshot, in
``volume_id``) with the last aggregate version applied (redelivery of anything at or below
it changes nothing), and the usage intervals (``resource``: ``volume`` or ``snapshot``; a
snapshot's interval names its volume in ``snapshot_volume_id``). The columns added since
the first version are added to a table that lacks them."""

from __future__ import annotations

USAGE_DDL = """
CREATE TABLE IF NOT EXISTS billing_volumes (
    volume_id uuid PRIMARY KEY,
    version integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS billing_intervals (
    volume_id uuid NOT NULL,
    start_version integer NOT NULL,
    project_id text NOT NULL,
    volume_type_id text NOT NULL,
    size_gb integer NOT NULL,
    usage_class text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    PRIMARY KEY (volume_id, start_version)
);
CREATE INDEX IF NOT EXISTS billing_intervals_project
    ON billing_intervals (project_id, started_at);
ALTER TABLE billing_intervals
    ADD COLUMN IF NOT EXISTS resource text NOT NULL DEFAULT 'volume',
    ADD COLUMN IF NOT EXISTS snapshot_volume_id uuid;
"""
