"""Who and why, stored beside every event a saga appends: the saga, the event that started
the step (``causation_id`` = its envelope id ``<aggregate_id>:<version>``), and the request
chain it serves (request ids, and the user and project of the request that began it)."""

from __future__ import annotations

from typing import Any

from cinderblock.wire.envelope import ReceivedEnvelope


def saga_meta(env: ReceivedEnvelope, saga: str) -> dict[str, Any]:
    return {
        "actor": f"saga:{saga}",
        "causation_id": env.id,
        "request_id": env.request_id,
        "global_request_id": env.meta.get("global_request_id"),
        "user_id": env.meta.get("user_id"),
        "project_id": env.meta.get("project_id"),
    }
