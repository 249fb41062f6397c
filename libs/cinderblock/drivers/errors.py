"""What a driver step raises, and the unit every size is counted in: the leaves of the
driver package (``base`` declares the port, ``encryption`` the header format; both use
these, so neither imports the other for them)."""

from __future__ import annotations

GIB = 2**30
"""Bytes in one GiB; volume sizes are whole GiB."""


class DriverError(Exception):
    """Base of every failure of a driver step.

    Attributes:
        operation: the step that failed: ``create``, ``extend``, ``delete``,
            ``unmanage``, ``migrate``, ``snapshot``, ``delete_snapshot``, ``revert``,
            ``attach`` (an export), ``detach`` (its removal) (or ``checksum``, which is
            no step).
        volume_id: the volume the step worked on (for ``delete_snapshot``, which
            names no volume, the snapshot id).
        reason: what went wrong, for logs and the compensation event.
    """

    def __init__(self, operation: str, volume_id: str, reason: str) -> None:
        super().__init__(operation, volume_id, reason)
        self.operation = operation
        self.volume_id = volume_id
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.operation} of volume {self.volume_id} failed: {self.reason}"


class CapacityError(DriverError):
    """Raised when no pool (or not the volume's pool) has room for the requested GiB.

    A scheduler-style failure: retrying elsewhere or later may succeed.
    """


class BackendError(DriverError):
    """Raised when the backend operation itself failed (I/O error, unknown pool or
    backend, missing volume or snapshot file, a size conflict with what is on disk, a
    copy whose checksum does not match its source)."""


class ExportConflictError(BackendError):
    """Raised by ``initialize_connection`` when a volume that is not multiattach is
    already exported to another connector (another host, for another server)."""
