"""Snapshot verbs of the command service: each touches the volume, the snapshot and, where
quota moves, the project's quota, in one atomic append."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from uuid import UUID

from cinderblock.domain.pending import Kind, PendingOperation
from cinderblock.domain.quota import snapshot_deltas, volume_deltas
from cinderblock.domain.snapshot import Snapshot, SnapshotNotFoundError, SnapshotStatus
from cinderblock.domain.snapshots import RevertConflictError
from cinderblock.domain.volume import Volume
from cinderblock.store.eventstore import Position
from cinderblock.store.plumbing import CommandPlumbing

__all__ = ["SnapshotCommands", "snapshot_deltas"]  # snapshot_deltas: moved to domain.quota

T = TypeVar("T")


class SnapshotCommands(CommandPlumbing):
    """Mixed into Volumes, whose plumbing (_visible, _quota, _retrying, _finish) it uses."""

    async def load_snapshot(self, caller: Any, snapshot_id: str) -> Snapshot:
        try:
            sid = UUID(snapshot_id)
        except ValueError:
            raise SnapshotNotFoundError(snapshot_id) from None
        snapshot = await self.store.load(sid, Snapshot)
        hidden = (
            snapshot is not None
            and caller is not None
            and not caller.is_admin
            and (snapshot.project_id != caller.project_id)
        )
        if snapshot is None or snapshot.is_deleted or hidden:
            raise SnapshotNotFoundError(snapshot_id)
        return snapshot

    async def create_snapshot(
        self,
        caller: Any,
        volume_id: str,
        snapshot_id: UUID,
        *,
        name: str | None,
        description: str | None,
        metadata: Mapping[str, str],
        force: bool,
        in_use_ok: bool,
        meta: Mapping[str, Any],
        authorize: Callable[[Volume], None],
    ) -> Position:
        async def attempt() -> Position:
            volume = await self._visible(caller, volume_id)
            authorize(volume)
            volume.take_snapshot(str(snapshot_id), force=force, in_use_ok=in_use_ok)
            snapshot = Snapshot.take(
                snapshot_id,
                volume_id=volume.vid,
                project_id=volume.project_id,
                user_id=caller.user_id,
                name=name,
                description=description,
                volume_size=volume.size_gb,
                metadata=dict(metadata),
                volume_type_name=volume.volume_type_name,
                volume_type_id=volume.volume_type_id,
                availability_zone=volume.availability_zone,
            )
            quota = await self._quota(volume.project_id)
            quota.consume(
                snapshot_deltas(volume.size_gb, volume.volume_type_name, count=1),
                self.config.quota_limits,
                size_gb=volume.size_gb,
                reason=f"snapshot {snapshot_id}",
            )
            return await self.store.save(volume, snapshot, quota, meta=meta)

        result: Position = await self._retrying("create snapshot", attempt)
        return result

    async def snapshot_act(
        self,
        caller: Any,
        snapshot_id: str,
        change: Callable[[Snapshot], T],
        *,
        meta: Mapping[str, Any],
        authorize: Callable[[Snapshot], None],
    ) -> tuple[Position, T]:
        async def attempt() -> tuple[Position, T]:
            snapshot = await self.load_snapshot(caller, snapshot_id)
            authorize(snapshot)
            result = change(snapshot)
            return await self.store.save(snapshot, meta=meta), result

        found: tuple[Position, T] = await self._retrying("snapshot action", attempt)
        return found

    async def settle_snapshot(
        self, snapshot_id: str, change: Callable[[Snapshot], bool], *, meta: Mapping[str, Any]
    ) -> bool:
        """A saga outcome on the snapshot alone (create completed or failed, delete failed)."""

        async def attempt() -> bool:
            snapshot = await self.store.load(UUID(snapshot_id), Snapshot)
            if snapshot is None or not change(snapshot):
                return False
            await self.store.save(snapshot, meta=meta)
            return True

        done: bool = await self._retrying("settle snapshot", attempt)
        return done

    async def complete_snapshot_delete(self, snapshot_id: str, *, meta: Mapping[str, Any]) -> bool:
        """The snapshot's data is gone: record it, drop it from its volume, give back quota."""

        async def attempt() -> bool:
            snapshot = await self.store.load(UUID(snapshot_id), Snapshot)
            if snapshot is None or not snapshot.complete_delete():
                return False
            volume = await self.store.load(UUID(snapshot.volume_id), Volume)
            touched: list[Any] = [snapshot]
            if volume is not None:
                volume.forget_snapshot(snapshot.sid)
                touched.append(volume)
            quota = await self._quota(snapshot.project_id)
            quota.release_usage(
                snapshot_deltas(snapshot.volume_size, snapshot.volume_type_name, count=1),
                reason=f"delete snapshot {snapshot_id}",
            )
            await self.store.save(*touched, quota, meta=meta)
            return True

        done: bool = await self._retrying("complete snapshot delete", attempt)
        return done

    async def delete_volume_cascade(
        self,
        caller: Any,
        volume_id: str,
        *,
        meta: Mapping[str, Any],
        force: bool,
        authorize: Callable[[Volume], None],
    ) -> Position:
        """DELETE /volumes/{id}?cascade=true: the volume and all its snapshots move to
        ``deleting`` in one append, or nothing changes. The delete saga removes them."""

        async def attempt() -> Position:
            volume = await self._visible(caller, volume_id)
            authorize(volume)
            snapshots = [await self.store.load(UUID(sid), Snapshot) for sid in volume.snapshot_ids]
            found = [s for s in snapshots if s is not None]
            interrupted = volume.pending_of(Kind.EXTEND)  # a forced delete cancels an extend
            gone = volume.request_delete_cascade(found, force=force)
            quota = await self._quota(volume.project_id)
            if interrupted is not None:
                quota.release(interrupted.reservation)
            if gone:
                quota.release_usage(
                    volume_deltas(volume.size_gb, volume.volume_type_name, count=1),
                    reason=f"delete {volume_id}",
                )
            return await self.store.save(volume, *found, quota, meta=meta)

        result: Position = await self._retrying("cascade delete", attempt)
        return result

    async def fail_delete_with_snapshots(
        self, volume_id: str, reason: str, *, meta: Mapping[str, Any]
    ) -> bool:
        """Compensation of a (cascade) delete: the volume goes to ``error_deleting``, and so
        does each of its snapshots still ``deleting``, in one append. Those already deleted
        stay deleted (their quota is given back). False when already recorded."""

        async def attempt() -> bool:
            volume = await self.store.load(UUID(volume_id), Volume)
            if volume is None or not volume.fail_delete(reason):
                return False
            touched: list[Any] = [volume]
            for sid in volume.snapshot_ids:
                snapshot = await self.store.load(UUID(sid), Snapshot)
                if snapshot is not None and snapshot.status == SnapshotStatus.DELETING:
                    snapshot.fail_delete(reason)
                    touched.append(snapshot)
            await self.store.save(*touched, meta=meta)
            return True

        done: bool = await self._retrying("fail delete", attempt)
        return done

    async def revert_volume(
        self,
        caller: Any,
        volume_id: str,
        snapshot_id: str | None,
        *,
        meta: Mapping[str, Any],
        authorize: Callable[[Volume], None],
    ) -> Position:
        """Volume reverting and snapshot restoring in one append: either both or neither
        (Cinder leaves the volume 'reverting' when the snapshot is not available, a QUIRK)."""

        async def attempt() -> Position:
            volume = await self._visible(caller, volume_id)
            latest = volume.latest_snapshot()
            snapshot = await self.store.load(UUID(latest), Snapshot) if latest else None
            size = snapshot.volume_size if snapshot else None
            volume.check_revert_target(snapshot_id, size)  # Cinder's 400s come before its 403
            authorize(volume)
            volume.request_revert(snapshot_id, size)
            if snapshot is None or not snapshot.start_restore():
                raise RevertConflictError.snapshot_not_available(volume_id, str(snapshot_id))
            return await self.store.save(volume, snapshot, meta=meta)

        result: Position = await self._retrying("revert", attempt)
        return result

    async def settle_revert(
        self, volume_id: str, request_version: int, failure: str | None, *, meta: Mapping[str, Any]
    ) -> bool:
        """The revert's outcome on the volume, and its snapshot back to ``available``, in
        one append; False when already settled."""

        def record(volume: Volume, _: object) -> None:
            if failure is None:
                volume.complete_revert(request_version)
            else:
                volume.fail_revert(request_version, failure)

        async def end_restore(_: Volume, pending: PendingOperation[Any]) -> list[Any]:
            snapshot = await self.store.load(UUID(pending.payload.snapshot_id), Snapshot)
            return [snapshot] if snapshot is not None and snapshot.end_restore() else []

        return await self.settle(
            volume_id,
            Kind.REVERT,
            request_version,
            record,
            succeeded=failure is None,
            meta=meta,
            touch=end_restore,
        )
