"""Volume-action request bodies: splitting ``{"<action>": payload}`` and one model per action.

The HTTP layer calls :func:`split_action_body` (spec §1.4 points 1-2), looks the
key up in its action table (unknown → :func:`no_such_action`), then calls
``<Model>.parse(payload, version)``: the microversion gate (§1.4 point 3, a bare 404)
and the schema (point 4). :data:`ACTION_MODELS` is the only list of action models; the
API's table takes its rows' models from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

from cinderblock.wire.actions_base import ActionBody
from cinderblock.wire.bookkeeping import BOOKKEEPING_MODELS
from cinderblock.wire.faults import BadMediaType, BadRequest
from cinderblock.wire.microversion import APIVersion
from cinderblock.wire.migration import MigrateVolume, MigrateVolumeCompletion
from cinderblock.wire.reimage import Reimage
from cinderblock.wire.schema import Boolean, VolumeSize
from cinderblock.wire.snapshots import Revert
from cinderblock.wire.storable import loads

JSON_MEDIA_TYPES = frozenset({"application/json", "application/vnd.openstack.volume+json"})


def no_such_action(key: object) -> BadRequest:
    """400 for an action key the service does not know (also ``None`` for no key)."""
    return BadRequest(
        f"There is no such action: {key}. "
        "Verify the request body and Content-Type header and try again."
    )


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def split_action_body(raw: bytes, content_type: str | None) -> tuple[str, object]:
    """The action key and its payload from a ``POST …/action`` body.

    Args:
        raw: the request body as received.
        content_type: the raw ``Content-Type`` header, or None when absent (do not
            pass a framework default such as ``application/octet-stream``).

    Raises:
        BadMediaType: the Content-Type is not JSON, or a body came without one.
        BadRequest: the body is empty, not JSON, not an object, or has 0 or ≥2 keys, or
            a string in it cannot be stored (``storable.loads``).
    """
    if content_type is not None and _media_type(content_type) not in JSON_MEDIA_TYPES:
        raise BadMediaType("Unsupported Content-Type")
    if not raw:
        raise no_such_action(None)
    if content_type is None:
        raise BadMediaType("Unsupported Content-Type")
    decoded = loads(raw)
    # Cinder answers 404 for some non-object bodies (QUIRK); always 400 here.
    if not isinstance(decoded, dict) or len(decoded) != 1:
        raise BadRequest("Malformed request body")
    ((key, payload),) = decoded.items()
    return key, payload


class ExtendAction(ActionBody):
    """``os-extend``: grow a volume to ``new_size`` GiB."""

    ACTION: ClassVar[str] = "os-extend"

    new_size: VolumeSize


class SetBootableAction(ActionBody):
    """``os-set_bootable``: mark a volume bootable or not."""

    ACTION: ClassVar[str] = "os-set_bootable"

    bootable: Boolean


ACTION_MODELS: Mapping[str, type[ActionBody]] = MappingProxyType(
    {
        model.ACTION: model
        for model in (
            ExtendAction,
            SetBootableAction,
            *BOOKKEEPING_MODELS,
            MigrateVolume,
            MigrateVolumeCompletion,
            Revert,
            Reimage,
        )
    }
)


def parse_action(key: str, payload: object, version: APIVersion) -> ActionBody:
    """Validate ``payload`` with the model registered for ``key``.

    Raises:
        BadRequest: unknown action, or a schema failure.
    """
    model = ACTION_MODELS.get(key)
    if model is None:
        raise no_such_action(key)
    return model.parse(payload, version)
