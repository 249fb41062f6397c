"""Domain errors: each says which rule was broken; none knows about HTTP."""

from __future__ import annotations


class VolumeError(Exception):
    """Base of every rule violation raised by the domain. ``code`` is stable."""

    code = "volume_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class VolumeNotFoundError(VolumeError):
    """Raised when a volume does not exist, is deleted, or belongs to another project."""

    code = "volume_not_found"

    def __init__(self, volume_id: str) -> None:
        super().__init__(f"Volume {volume_id} could not be found.")
        self.volume_id = volume_id


class InvalidVolumeError(VolumeError):
    """Raised when the volume's state does not allow the action (Cinder's InvalidVolume)."""

    code = "invalid_volume"


class InvalidInputError(VolumeError):
    """Raised when the request is well-formed but its values break a rule (InvalidInput)."""

    code = "invalid_input"


class VolumeStatusError(InvalidVolumeError):
    """Raised when the volume's status is not one the action may start from."""

    code = "invalid_status"

    def __init__(self, volume_id: str, status: str, *, action: str, expected: str) -> None:
        super().__init__(
            f"Volume {volume_id} status must be '{{'status': '{expected}'}}' to {action}, "
            f"currently {status}."
        )
        self.volume_id = volume_id
        self.status = status
        self.action = action


class VolumeConflictError(VolumeError):
    """Raised when the volume's or a snapshot's state conflicts with a request Cinder
    answers 409 for (its message is the whole text, e.g. "Invalid volume: ...")."""

    code = "volume_conflict"


class QuotaExceededError(VolumeError):
    """Raised when a reservation would exceed a project quota.

    ``exc_name`` is the name Cinder gives the error class (it prefixes the 413 message).
    """

    code = "over_quota"

    def __init__(self, exc_name: str, message: str, resource: str) -> None:
        super().__init__(message)
        self.exc_name = exc_name
        self.resource = resource


class StaleCommandError(VolumeError):
    """Raised when a saga completion refers to a request the volume no longer has pending."""

    code = "stale_command"


class AttachmentConflictError(VolumeError):
    """Raised when a detach would pull an attachment from under its instance, or names an
    attachment the volume does not have (Cinder's ConflictNovaUsingAttachment, 409)."""

    code = "attachment_conflict"


class MetadataNotFoundError(VolumeError):
    """Raised when image ("Glance") metadata, or one key of it, is absent (404)."""

    code = "metadata_not_found"

    def __init__(self, volume_id: str) -> None:
        super().__init__(f"Glance metadata for volume/snapshot {volume_id} cannot be found.")
