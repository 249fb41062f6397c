"""os-migrate_volume_completion, decided on both volumes (spec §3.13).

Cinder's API tells two cases apart. When neither volume has a ``migration_status`` it is
Nova's swap (``nova-compute`` moved the guest from the old volume to the new one and asks
Cinder to book it): unless ``error`` is set, every attachment of the old volume is detached
from it and the same instance, host and mountpoint attached to the new one in ``rw``
(``cinder/volume/api.py`` ``migrate_volume_completion``: ``detach`` then ``attach`` per
attachment). The new volume is what survives (``save_volume_id``). Otherwise the volumes
must be a migration's source and its ``target:<source id>`` destination; migration here is
in place and never makes such a destination, so those requests get Cinder's 400s.

The moves are the legacy actions' own rules and events (``Volume.detach``,
``Volume.attach``), so the read models, history and billing need nothing new. Unlike
Cinder, which detaches and attaches one call after the other and can stop half-way, the
command service appends both volumes' events in one save or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from cinderblock.domain.errors import InvalidVolumeError
from cinderblock.domain.volume import Volume

SWAP_MODE = "rw"  # Cinder re-attaches the new volume read-write whatever the old mode was


def swaps_attachments(source: Volume, target: Volume, *, error: bool) -> bool:
    """True when the completion moves the source's attachments to the target (a swap that
    did not fail, with attachments to move); False when it changes nothing. Raises Cinder's
    ``InvalidVolume`` when the volumes are not a migration's source and destination."""
    if not (source.migration_status or target.migration_status):
        return not error and bool(source.attachments)
    if not source.migration_status:
        raise InvalidVolumeError("Source volume not mid-migration.")
    if not target.migration_status:
        raise InvalidVolumeError("Destination volume not mid-migration.")
    expected = f"target:{source.vid}"
    if target.migration_status != expected:
        raise InvalidVolumeError(
            f"Destination has migration_status {target.migration_status}, expected {expected}."
        )
    # Unreachable through the API: migration is in place, no volume is ever a target:<id>.
    raise InvalidVolumeError(f"Volume {target.vid} is not a destination this service made.")


def swap_attachments(source: Volume, target: Volume, attachment_ids: Sequence[str]) -> None:
    """Move each attachment of ``source`` to ``target``: detach it (the source's statuses
    recomputed: ``available``/``detached`` when none is left), then attach the same
    instance, host and mountpoint to the target under the next of ``attachment_ids``. A
    target that already holds a live attachment of that instance (reserved through the
    attachments API) keeps that row and only becomes ``in-use``, as Cinder's
    ``attach_volume`` finds it by instance. Raises the actions' own errors (maintenance,
    read-only volume, a second attachment of a volume without multiattach); the caller
    then saves nothing."""
    moving = list(source.attachments.items())
    if len(attachment_ids) < len(moving):
        raise ValueError(f"{len(moving)} attachments to move, {len(attachment_ids)} ids given")
    for (attachment_id, row), new_id in zip(moving, attachment_ids, strict=False):
        source.detach(attachment_id, service=True)  # the API asked Nova first, as Cinder does
        target.attach(
            new_id,
            mountpoint=row["mountpoint"],
            mode=SWAP_MODE,
            instance_uuid=row["instance_uuid"],
            host_name=row["attached_host"],
        )
