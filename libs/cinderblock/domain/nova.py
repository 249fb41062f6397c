"""Telling Nova about an extend of an attached volume: which instances to tell, and the
recorded outcome of telling them (one ``NovaNotified`` per extend, keyed by the version of
the ``Extended`` event it follows).

A mixin of Volume (explicit events with ``apply``, as ``unmanage``). Nova is never asked
to undo anything here: the extend stands whatever Nova answered.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate

from cinderblock.domain.errors import InvalidInputError, StaleCommandError

# Per-instance results, from the per-event ``code`` of Nova's answer (or its absence).
ACCEPTED = "accepted"  # code 200: Nova will resize the guest's block device
INSTANCE_NOT_FOUND = "instance_not_found"  # code 404, or a 404 for the whole request
NO_HOST = "no_host"  # code 422: the instance is on no compute host
REJECTED = "rejected"  # any other per-event code (400: tag missing, ...)
NOT_SENT = "not_sent"  # no usable answer: 5xx/timeouts until attempts ran out, 4xx, ...

# The whole notification.
NOTIFIED = "notified"  # every instance accepted
PARTIAL = "partial"  # Nova answered for every event, some were not accepted
FAILED = "failed"  # Nova's answer was unusable (Cinder's _send_events returns False)
OUTCOMES = frozenset({NOTIFIED, PARTIAL, FAILED})

# Cinder's user message for this failure (message_field: action EXTEND_VOLUME '007', detail
# NOTIFY_COMPUTE_SERVICE_FAILED '009'; the messages API renders "<action>:<detail>").
USER_MESSAGE_EVENT_ID = "VOLUME_VOLUME_007_009"
USER_MESSAGE = "extend volume:Compute service failed to extend volume."
# After a reimage of a reserved volume (action REIMAGE_VOLUME '016', REIMAGE_VOLUME_FAILED '028').
REIMAGE_USER_MESSAGE_EVENT_ID = "VOLUME_VOLUME_016_028"
REIMAGE_USER_MESSAGE = "reimage volume:Compute service failed to reimage volume."


def result_of_code(code: int | None) -> str:
    """One instance's result from the per-event ``code`` Nova returned for it."""
    if code == 200:
        return ACCEPTED
    if code == 404:
        return INSTANCE_NOT_FOUND
    if code == 422:
        return NO_HOST
    if code is None:
        return NOT_SENT
    return REJECTED


def outcome_of(results: list[dict[str, Any]], *, answered: bool) -> str:
    """``failed`` when Nova gave no usable per-event answer (no answer, 4xx/5xx, a 404 for
    the whole request) or left an event without a code: Cinder's ``_send_events`` returns
    False then. ``notified`` when every instance was accepted; otherwise ``partial``
    (per-event 404/422/400 are warnings in Cinder, not failures)."""
    if not answered or any(r["result"] == NOT_SENT for r in results):
        return FAILED
    if all(r["result"] == ACCEPTED for r in results):
        return NOTIFIED
    return PARTIAL


class NovaNotifications:
    attachments: dict[str, dict[str, Any]]
    vid: str

    class NovaNotified(Aggregate.Event):
        extend_version: int  # version of the Volume.Extended event this notification is for
        new_size_gb: int
        outcome: str  # notified | partial | failed
        events: list[dict[str, Any]]  # {server_uuid, code, result} per instance
        attempts: int  # HTTP requests made (1 unless 5xx/timeouts were retried)
        http_status: int | None  # status of the last answer (None: no answer)
        reason: str | None  # why it failed or was partial, for operators
        user_message: str | None  # Cinder's user message when failed, else None

        def apply(self, volume: Any) -> None:
            done = dict(volume.__dict__.get("nova_notified", {}))
            done[self.extend_version] = self.outcome
            volume.nova_notified = done

    class NovaReimageNotified(Aggregate.Event):
        """``volume-reimaged`` sent after the reimage of a reserved volume (Nova's rebuild
        waits for it), and what Nova answered; fields as ``NovaNotified``."""

        reimage_version: int  # version of the Volume.Reimaged event it follows
        outcome: str
        events: list[dict[str, Any]]
        attempts: int
        http_status: int | None
        reason: str | None
        user_message: str | None

        def apply(self, volume: Any) -> None:
            done = dict(volume.__dict__.get("nova_reimage_notified", {}))
            done[self.reimage_version] = self.outcome
            volume.nova_reimage_notified = done

    def nova_reimage_outcome(self, reimage_version: int) -> str | None:
        """The recorded outcome of the ``volume-reimaged`` for the reimage at that version."""
        return dict(self.__dict__.get("nova_reimage_notified", {})).get(reimage_version)

    def record_nova_reimage_notification(
        self,
        reimage_version: int,
        *,
        events: list[dict[str, Any]],
        attempts: int,
        http_status: int | None,
        answered: bool,
        reason: str | None,
    ) -> str:
        """As ``record_nova_notification``, for the reimage at ``reimage_version``."""
        outcome = self._new_outcome(
            self.nova_reimage_outcome(reimage_version), "reimage", reimage_version, events, answered
        )
        self.trigger_event(  # type: ignore[attr-defined]
            self.NovaReimageNotified,
            reimage_version=reimage_version,
            outcome=outcome,
            events=[dict(e) for e in events],
            attempts=attempts,
            http_status=http_status,
            reason=reason,
            user_message=REIMAGE_USER_MESSAGE if outcome == FAILED else None,
        )
        return outcome

    def _new_outcome(
        self,
        recorded: str | None,
        what: str,
        version: int,
        events: list[dict[str, Any]],
        answered: bool,
    ) -> str:
        """The outcome of telling Nova of the ``what`` at ``version``: StaleCommandError if
        one is ``recorded`` already, InvalidInputError without an instance."""
        if recorded is not None:
            raise StaleCommandError(
                f"Nova was already told of the {what} of volume {self.vid} at version {version}."
            )
        if not events:
            raise InvalidInputError("A Nova notification names at least one instance.")
        return outcome_of(events, answered=answered)

    @property
    def instances_to_notify(self) -> list[str]:
        """The instances the volume is attached to (rows with no instance, e.g. a host
        attachment, are not Nova's), each once."""
        rows = self.attachments.values()
        return sorted({row["instance_uuid"] for row in rows if row.get("instance_uuid")})

    def nova_outcome(self, extend_version: int) -> str | None:
        """The recorded outcome of the notification for the extend at ``extend_version``."""
        return dict(self.__dict__.get("nova_notified", {})).get(extend_version)

    def record_nova_notification(
        self,
        extend_version: int,
        *,
        new_size_gb: int,
        events: list[dict[str, Any]],
        attempts: int,
        http_status: int | None,
        answered: bool,
        reason: str | None,
    ) -> str:
        """Record what Nova answered for the extend at ``extend_version``; returns the
        outcome. StaleCommandError when that extend's notification is already recorded."""
        outcome = self._new_outcome(
            self.nova_outcome(extend_version), "extend", extend_version, events, answered
        )
        self.trigger_event(  # type: ignore[attr-defined]
            self.NovaNotified,
            extend_version=extend_version,
            new_size_gb=new_size_gb,
            outcome=outcome,
            events=[dict(e) for e in events],
            attempts=attempts,
            http_status=http_status,
            reason=reason,
            user_message=USER_MESSAGE if outcome == FAILED else None,
        )
        return outcome
