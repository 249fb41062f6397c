"""The base of every action payload model (kept apart so action groups can live in their
own modules without import cycles)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict

from cinderblock.wire.faults import BadRequest
from cinderblock.wire.microversion import APIVersion
from cinderblock.wire.schema import SchemaError, validate_object


class ActionBody(BaseModel):
    """Base of the per-action payload models (Cinder's ``additionalProperties: false``).

    Subclasses set ``ACTION`` and may set ``SINCE``: payload keys that exist only
    from a microversion on (below it they are unexpected keys, as in Cinder).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    ACTION: ClassVar[str]
    SINCE: ClassVar[Mapping[str, APIVersion]] = MappingProxyType({})

    @classmethod
    def parse(cls, payload: object, version: APIVersion) -> Self:
        """Validate ``payload`` at ``version``.

        Raises:
            BadRequest: Cinder's schema message, e.g. ``Invalid input for
                field/attribute new_size. Value: 0. 0 is less than the minimum of 1``.
        """
        hidden = [key for key, since in cls.SINCE.items() if version < since]
        try:
            return validate_object(cls, payload, field=cls.ACTION, hidden=hidden)
        except SchemaError as err:
            raise BadRequest(str(err)) from err
