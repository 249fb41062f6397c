"""Read-model tables. Every row carries the aggregate version it reflects, which makes
applying an event twice a no-op; tracking rows record how far each projection got."""

from __future__ import annotations

# The tables the projector derives from events (everything else in the schema is
# operational state or bookkeeping: backend_pools, services, tracking, dead_letters,
# quarantine).
PROJECTED_TABLES = ("volumes", "attachments", "snapshots", "volume_types", "quotas", "messages")

READMODELS_DDL = """
CREATE TABLE IF NOT EXISTS volumes (
    id uuid PRIMARY KEY,
    project_id text NOT NULL,
    user_id text NOT NULL,
    name text,
    description text,
    size integer NOT NULL,
    status text NOT NULL,
    previous_status text,
    attach_status text NOT NULL DEFAULT 'detached',
    migration_status text,
    host text,
    availability_zone text NOT NULL,
    volume_type_id text NOT NULL,
    volume_type_name text,
    bootable boolean NOT NULL DEFAULT false,
    multiattach boolean NOT NULL DEFAULT false,
    encryption_key_id text,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    admin_metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    image_metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    snapshot_id text,
    source_volid text,
    consistencygroup_id text,
    group_id text,
    provider_id text,
    replication_status text,
    use_quota boolean NOT NULL DEFAULT true,
    shared_targets boolean,
    service_uuid text,
    cluster_name text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz,
    deleted boolean NOT NULL DEFAULT false,
    deleted_at timestamptz,
    version integer NOT NULL
);
CREATE INDEX IF NOT EXISTS volumes_project_created ON volumes (project_id, created_at DESC, id)
    WHERE NOT deleted;
CREATE INDEX IF NOT EXISTS volumes_created ON volumes (created_at DESC, id) WHERE NOT deleted;

CREATE TABLE IF NOT EXISTS attachments (
    id uuid PRIMARY KEY,
    volume_id uuid NOT NULL,
    instance_uuid text,
    attached_host text,
    mountpoint text,
    attach_status text NOT NULL,
    attach_mode text,
    connector jsonb,
    connection_info jsonb,
    attach_time timestamptz,
    detach_time timestamptz,
    deleted boolean NOT NULL DEFAULT false,
    version integer NOT NULL
);
CREATE INDEX IF NOT EXISTS attachments_volume ON attachments (volume_id) WHERE NOT deleted;
ALTER TABLE attachments ADD COLUMN IF NOT EXISTS connection_info jsonb;

CREATE TABLE IF NOT EXISTS snapshots (
    id uuid PRIMARY KEY,
    volume_id uuid NOT NULL,
    project_id text NOT NULL,
    user_id text NOT NULL,
    name text,
    description text,
    size integer NOT NULL,
    status text NOT NULL,
    progress text NOT NULL DEFAULT '0%',
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL,
    updated_at timestamptz,
    deleted boolean NOT NULL DEFAULT false,
    version integer NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_project_created ON snapshots (project_id, created_at DESC, id)
    WHERE NOT deleted;
CREATE INDEX IF NOT EXISTS snapshots_volume ON snapshots (volume_id) WHERE NOT deleted;

CREATE TABLE IF NOT EXISTS volume_types (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    description text,
    is_public boolean NOT NULL DEFAULT true,
    extra_specs jsonb NOT NULL DEFAULT '{}'::jsonb,
    projects jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at timestamptz NOT NULL,
    updated_at timestamptz,
    deleted boolean NOT NULL DEFAULT false,
    version integer NOT NULL
);
-- The type's encryption ({encryption_id, provider, cipher, key_size, control_location}).
ALTER TABLE volume_types ADD COLUMN IF NOT EXISTS encryption jsonb;
ALTER TABLE volume_types ADD COLUMN IF NOT EXISTS encryption_created_at timestamptz;
ALTER TABLE volume_types ADD COLUMN IF NOT EXISTS encryption_updated_at timestamptz;

CREATE TABLE IF NOT EXISTS quotas (
    id uuid PRIMARY KEY,
    project_id text NOT NULL UNIQUE,
    limits jsonb NOT NULL DEFAULT '{}'::jsonb,
    in_use jsonb NOT NULL DEFAULT '{}'::jsonb,
    reservations jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at timestamptz,
    version integer NOT NULL
);

-- User messages (Cinder's messages API): one per failed asynchronous step, owned by the
-- aggregate of the resource it is about (cinderblock.readmodels.messages). ``project_id``
-- is the project of the request that started the failed work (Cinder's context project).
CREATE TABLE IF NOT EXISTS messages (
    id uuid PRIMARY KEY,
    project_id text,
    request_id text,
    resource_type text NOT NULL,
    resource_uuid uuid NOT NULL,
    event_id text NOT NULL,
    action_id text NOT NULL,
    detail_id text NOT NULL,
    message_level text NOT NULL,
    event_name text NOT NULL,
    version integer NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    deleted_at timestamptz
);
CREATE INDEX IF NOT EXISTS messages_project_created ON messages (project_id, created_at DESC, id)
    WHERE NOT deleted;
CREATE INDEX IF NOT EXISTS messages_resource ON messages (resource_uuid);

-- Key-wise sum of two {"resource": n} objects (usage arithmetic of the quota projection).
CREATE OR REPLACE FUNCTION cb_jsonb_add(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT coalesce(jsonb_object_agg(k, coalesce((a ->> k)::bigint, 0)
                                        + coalesce((b ->> k)::bigint, 0)), '{}'::jsonb)
    FROM (SELECT jsonb_object_keys(a) UNION SELECT jsonb_object_keys(b)) AS keys(k)
$fn$;

-- Operational state reported by the volume service (the sagas), as Cinder's volume service
-- reports to its scheduler: not derived from events, refreshed every few seconds.
CREATE TABLE IF NOT EXISTS backend_pools (
    name text PRIMARY KEY,
    backend text NOT NULL,
    capacity_gb integer NOT NULL,
    allocated_gb integer NOT NULL,
    free_gb integer NOT NULL,
    multiattach boolean NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS services (
    binary_name text NOT NULL,
    host text NOT NULL,
    zone text NOT NULL,
    disabled boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (binary_name, host)
);

CREATE TABLE IF NOT EXISTS tracking (
    name text PRIMARY KEY,
    tx_id bigint NOT NULL,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS dead_letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer text NOT NULL,
    subject text NOT NULL,
    msg_id text,
    deliveries integer NOT NULL,
    error text NOT NULL,
    payload bytea NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now()
);

-- Events a consumer set aside (cinderblock.readmodels.quarantine): the one it could not apply
-- and no retry would fix (held = false), and its aggregate's later ones (held = true). The
-- consumer is a projection (its tracking name), the relay or a JetStream durable.
CREATE TABLE IF NOT EXISTS quarantine (
    consumer text NOT NULL,
    aggregate_id uuid NOT NULL,
    version integer NOT NULL,
    event_name text NOT NULL,
    held boolean NOT NULL,
    error text NOT NULL,
    tx_id bigint,
    position bigint,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, aggregate_id, version)
);
"""

# The projector NOTIFYs this channel with "<tx_id>:<position>" after each committed batch.
PROJECTED_CHANNEL = "cinderblock_projected"
