"""The volume actions, one row each (``POST …/volumes/{id}/action``, spec §3): request model,
policy rules, handler, reply status and whether Cinder builds the reply by hand.

The dispatcher (``handlers.actions``) reads only this table. A row's model is the one that
``cinderblock.wire.actions.ACTION_MODELS`` registers for the key: wire keeps the only list
of models (it parses without the service), this table takes them from there, and building
it fails at import unless both name the same keys.

``rules`` lists every policy rule the handler may check besides the volume lookup's
(some only for some volumes or requests: an in-use extend, a multiattach type, a public
image). Handlers state their own rules; rows of handlers this package owns name the
handler's constants, the others the strings the handler uses, and
``tests/unit/api/test_action_rules.py`` checks each row against what its handler asks
the policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aiohttp import web

from cinderblock.api.context import RequestContext
from cinderblock.api.deps import Deps
from cinderblock.api.handlers import (
    bookkeeping,
    bootable,
    extend,
    migration,
    reimage,
    retype,
    snapshots,
    upload,
)
from cinderblock.wire.actions import ACTION_MODELS
from cinderblock.wire.actions_base import ActionBody

Handler = Callable[[Deps, RequestContext, str, Any], Awaitable[web.Response]]

ADMIN = "volume_extension:volume_admin_actions"
VOLUME_ACTIONS = "volume_extension:volume_actions"
IMAGE_METADATA = "volume_extension:volume_image_metadata"


class ActionTableError(RuntimeError):
    """Raised at import when the table and wire's model registry name different actions."""


@dataclass(frozen=True)
class ActionSpec:
    """One volume action.

    Attributes:
        key: the body's only key, e.g. ``os-extend``.
        model: the wire model that parses the payload (microversion gates included).
        handler: ``handler(deps, ctx, volume_id, body)`` → the reply.
        rules: every policy rule the handler may check (besides the volume lookup's).
        status: the success status (spec §1.5: 202, or 200 where Cinder declares it).
        raw_reply: Cinder builds the reply by hand: no ``x-compute-request-id``.
    """

    key: str
    model: type[ActionBody]
    handler: Handler
    rules: tuple[str, ...]
    status: int
    raw_reply: bool = False


def _row(
    key: str,
    handler: Handler,
    rules: Iterable[str],
    status: int = 202,
    *,
    raw_reply: bool = False,
) -> ActionSpec:
    model = ACTION_MODELS.get(key)
    if model is None:
        raise ActionTableError(f"{key}: no request model in cinderblock.wire.actions")
    return ActionSpec(key, model, handler, tuple(rules), status, raw_reply)


def _table(rows: Iterable[ActionSpec]) -> Mapping[str, ActionSpec]:
    table: dict[str, ActionSpec] = {}
    for row in rows:
        if row.key in table:
            raise ActionTableError(f"{row.key}: two rows")
        table[row.key] = row
    unserved = set(ACTION_MODELS) - set(table)
    if unserved:
        raise ActionTableError(f"request models without a row: {sorted(unserved)}")
    return MappingProxyType(table)


ACTION_TABLE: Mapping[str, ActionSpec] = _table(
    (
        _row("os-extend", extend.extend, (extend.RULE, extend.ATTACHED_RULE)),
        _row("os-reset_status", bookkeeping.reset_status, (f"{ADMIN}:reset_status",)),
        _row("revert", snapshots.revert, (snapshots.REVERT_RULE,)),
        _row(
            "os-set_image_metadata",
            bookkeeping.set_image_metadata,
            (f"{IMAGE_METADATA}:set", "volume:update_volume_metadata"),
            200,
        ),
        _row(
            "os-unset_image_metadata",
            bookkeeping.unset_image_metadata,
            (
                f"{IMAGE_METADATA}:remove",
                "volume:get_volume_metadata",
                "volume:delete_volume_metadata",
            ),
            200,
            raw_reply=True,
        ),
        _row(
            "os-show_image_metadata",
            bookkeeping.show_image_metadata,
            ("volume:get_volume_metadata",),
            200,
        ),
        _row("os-attach", bookkeeping.attach, (f"{VOLUME_ACTIONS}:attach",)),
        _row("os-detach", bookkeeping.detach, (f"{VOLUME_ACTIONS}:detach",)),
        _row(
            "os-unmanage",
            bookkeeping.unmanage,
            ("volume_extension:volume_unmanage", "volume:delete"),
            raw_reply=True,
        ),
        _row(
            "os-force_detach",
            bookkeeping.force_detach,
            (
                f"{ADMIN}:force_detach",
                f"{VOLUME_ACTIONS}:terminate_connection",
                f"{VOLUME_ACTIONS}:detach",
            ),
        ),
        _row("os-retype", retype.retype, (retype.RULE, retype.MULTIATTACH_RULE)),
        _row("os-migrate_volume", migration.migrate_volume, (migration.MIGRATE_RULE,)),
        _row(
            "os-migrate_volume_completion",
            migration.migrate_volume_completion,
            (migration.COMPLETION_RULE, migration.SWAP_DETACH_RULE, migration.SWAP_ATTACH_RULE),
            200,
        ),
        _row(
            "os-force_delete",
            bookkeeping.force_delete,
            (f"{ADMIN}:force_delete", "volume:delete"),
        ),
        _row("os-set_bootable", bootable.set_bootable, (bootable.RULE,), 200),
        _row("os-volume_upload_image", upload.upload_image, (upload.RULE, upload.PUBLIC_RULE)),
        _row("os-reserve", bookkeeping.reserve, (f"{VOLUME_ACTIONS}:reserve",)),
        _row("os-unreserve", bookkeeping.unreserve, (f"{VOLUME_ACTIONS}:unreserve",)),
        _row(
            "os-begin_detaching",
            bookkeeping.begin_detaching,
            (f"{VOLUME_ACTIONS}:begin_detaching",),
        ),
        _row(
            "os-roll_detaching",
            bookkeeping.roll_detaching,
            (f"{VOLUME_ACTIONS}:roll_detaching",),
        ),
        _row(
            "os-terminate_connection",
            bookkeeping.terminate_connection,
            (f"{VOLUME_ACTIONS}:terminate_connection",),
        ),
        _row(
            "os-initialize_connection",
            bookkeeping.initialize_connection,
            (f"{VOLUME_ACTIONS}:initialize_connection",),
            200,
        ),
        _row(
            "os-update_readonly_flag",
            bookkeeping.update_readonly_flag,
            ("volume:update_readonly_flag",),
        ),
        # Beyond spec §3 (issue 9 item 6): 3.68, Nova's rebuild of a volume-backed server.
        _row("os-reimage", reimage.reimage, (reimage.RULE, reimage.RESERVED_RULE)),
    )
)
