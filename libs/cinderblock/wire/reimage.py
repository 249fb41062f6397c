"""Request model of os-reimage (3.68; Cinder's ``volume_actions.reimage`` schema)."""

from __future__ import annotations

from typing import ClassVar, Self

from cinderblock.wire.actions_base import ActionBody
from cinderblock.wire.faults import resource_not_found
from cinderblock.wire.microversion import APIVersion
from cinderblock.wire.schema import Boolean, Uuid

REIMAGE_VERSION = APIVersion(3, 68)


class Reimage(ActionBody):
    """``{"os-reimage": {"image_id": uuid, "reimage_reserved"?: boolean}}``. Below 3.68
    the action does not exist for Cinder's versioned method: a bare 404, before the body
    is looked at."""

    ACTION: ClassVar[str] = "os-reimage"

    image_id: Uuid
    reimage_reserved: Boolean = False

    @classmethod
    def parse(cls, payload: object, version: APIVersion) -> Self:
        if version < REIMAGE_VERSION:
            raise resource_not_found()
        return super().parse(payload, version)
