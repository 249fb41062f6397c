"""DDL of the API's request log (``cinderblock.audit.requests``): a module of its own so the
schema can be ensured without importing what reads it."""

from __future__ import annotations

TABLE = "api_requests"
AUDIT_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    request_id text PRIMARY KEY,
    at timestamptz NOT NULL,
    project_id text,
    facts jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS {TABLE}_at ON {TABLE} (at);
"""
