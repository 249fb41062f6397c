"""Deleting a user message (Cinder's ``DELETE /messages/{id}``): a fact on the aggregate of
the resource the message is about, the same aggregate whose failure recorded it, so that a
replay keeps it deleted and every read-model row stays changed by one aggregate's events.

A mixin of Volume and Snapshot (explicit events with ``apply``, as ``nova``). The messages
themselves are derived from the failure events by the read model
(``cinderblock.readmodels.messages``); the aggregate only remembers which ones were
deleted, so a second delete of the same message is refused (404, as Cinder's once the row
is gone).
"""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate

from cinderblock.domain.errors import VolumeError


class MessageNotFoundError(VolumeError):
    """Raised when a message is already deleted (Cinder's MessageNotFound, 404)."""

    code = "message_not_found"

    def __init__(self, message_id: str) -> None:
        super().__init__(f"Message {message_id} could not be found.")
        self.message_id = message_id


class UserMessages:
    class MessageDeleted(Aggregate.Event):
        message_id: str

        def apply(self, aggregate: Any) -> None:
            deleted = aggregate.__dict__.get("deleted_messages", ())
            aggregate.deleted_messages = (*deleted, self.message_id)

    @property
    def deleted_message_ids(self) -> tuple[str, ...]:
        found: tuple[str, ...] = self.__dict__.get("deleted_messages", ())
        return found

    def delete_message(self, message_id: str) -> None:
        """Mark the message ``message_id`` (one this aggregate's failure recorded: the
        caller found it in the read model) deleted; MessageNotFoundError when it is."""
        if message_id in self.deleted_message_ids:
            raise MessageNotFoundError(message_id)
        self.trigger_event(self.MessageDeleted, message_id=message_id)  # type: ignore[attr-defined]
