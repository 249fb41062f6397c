"""URL map: every v3 resource with and without the project segment (Cinder's router)."""

from __future__ import annotations

from aiohttp import web

from cinderblock.api.handlers import (
    actions,
    attachments,
    backends,
    limits,
    messages,
    metadata,
    quotas,
    snapshot_actions,
    snapshots,
    types,
    usage,
    versions,
    volume_encryption,
    volumes,
)


def setup_routes(app: web.Application, project_id_regex: str) -> None:
    r = app.router
    r.add_get("/", versions.root, allow_head=False)
    r.add_get("/v3", versions.v3, allow_head=False)
    r.add_get("/v3/", versions.v3, allow_head=False)
    r.add_route("GET", "/healthcheck", versions.healthcheck)
    r.add_route("HEAD", "/healthcheck", versions.healthcheck)
    for prefix in (f"/v3/{{project_id:{project_id_regex}}}", "/v3"):
        r.add_post(f"{prefix}/volumes", volumes.create)
        r.add_get(f"{prefix}/volumes", volumes.index, allow_head=False)
        r.add_get(f"{prefix}/volumes/detail", volumes.detail, allow_head=False)
        r.add_get(f"{prefix}/volumes/{{volume_id}}", volumes.show, allow_head=False)
        r.add_put(f"{prefix}/volumes/{{volume_id}}", volumes.update)
        r.add_delete(f"{prefix}/volumes/{{volume_id}}", volumes.delete)
        r.add_post(f"{prefix}/volumes/{{volume_id}}/action", actions.volume_action)
        volume_encryption.setup(r, prefix)
        r.add_post(f"{prefix}/snapshots", snapshots.create)
        r.add_get(f"{prefix}/snapshots", snapshots.index, allow_head=False)
        r.add_get(f"{prefix}/snapshots/detail", snapshots.detail, allow_head=False)
        r.add_get(f"{prefix}/snapshots/{{snapshot_id}}", snapshots.show, allow_head=False)
        r.add_put(f"{prefix}/snapshots/{{snapshot_id}}", snapshots.update)
        r.add_delete(f"{prefix}/snapshots/{{snapshot_id}}", snapshots.delete)
        types.setup(r, prefix)
        attachments.setup(r, prefix)
        quotas.setup(r, prefix)
        limits.setup(r, prefix)
        backends.setup(r, prefix)
        metadata.setup(r, prefix)
        usage.setup(r, prefix)
        snapshot_actions.setup(r, prefix)
        messages.setup(r, prefix)
