"""Model-based test: random valid sequences of volume commands and saga outcomes on the
whole system (api, relay, projector, sagas in this process; real PostgreSQL and NATS; the
file driver behind the fault injector), then two invariants per sequence:

- the live read models equal a full replay of the log (`cinderblock.replay.verify.verify`
  finds no difference);
- at every volume version the sequence passed through, the state rebuilt by the code
  behind `cinderblock state --version N` (`cinderblock.audit.state.rows`, rendered by the
  API's view as the command renders it) equals the live read-model row (every column,
  `version` and `updated_at` included) and the API's GET taken at that version. Volumes
  are recorded right after each command (read-your-writes: often the transient status a
  saga then ends) and again once everything settled. The `cinderblock state` command
  itself runs on the last version of the last volumes and must print that GET.

Commands: create (plain, of a type, from a snapshot, refused by quota), extend,
set_bootable, PUT name/description/metadata, os-reserve/os-unreserve, os-attach/os-detach,
the attachments API (reserve, connect and complete, delete), begin/roll back detaching,
the readonly flag, reset status, image metadata set/unset, retype (never / on-demand),
migrate, snapshot create/delete, delete, volume-type changes (new type, description,
extra specs) and quota limit changes. Every saga step ends in success or, 1 in 4, an
injected driver failure (`FaultPlan`: create, extend, delete, snapshot, delete_snapshot,
migrate, which a moving retype also uses), whose compensation is then part of the
history. Each rule also checks the outcome a model of Cinder predicts (status, size,
type, migration status, 202 or 413 by the project's quota).

Why a `RuleBasedStateMachine` run in a worker thread: hypothesis calls rules
synchronously, and the system runs on the session's event loop. The async test hands the
machine to `asyncio.to_thread`, and each rule submits its coroutine to the session loop
with `run_coroutine_threadsafe` and waits for it (as `test_fuzz_actions.py` does with
`@given`), so the loop keeps serving while hypothesis runs. The model holds what a rule
needs to pick a valid command (each volume as last shown, attachments, snapshots, the
project's types); it is refreshed from the API after every step, once the saga the step
started has settled, the project's quota reservations are committed or released and the
projector has applied the whole log (waits wake on the projector's NOTIFY, never on
sleeps). Whether a rule has a valid target depends on what the live system did, so it is
decided inside the rule (no target: a no-op) rather than by hypothesis preconditions,
which hypothesis requires to be the same whenever it replays the same choices.

`test_a_tour_of_every_command` first runs one scripted sequence through every rule, with
success and failure of each saga step, so that every command is covered on every run
whatever the random sequences draw.

Bounded for CI: 30 random sequences of up to 50 rules drawn (about half find no target),
derandomized (the same draws every run; choices are made in the model's creation order,
never by the random ids), no shrinking (a failure prints its whole sequence; each shrink
attempt replays a sequence against the real system, minutes in all). Which commands the
random part draws most shifts whenever this file changes (hypothesis seeds from the
code), hence the tour. The whole file takes 15 to 30 s here. Environment:

- ``CINDERBLOCK_MODEL_EXAMPLES=200 CINDERBLOCK_MODEL_STEPS=60``: the longer form (about
  5 minutes);
- ``CINDERBLOCK_MODEL_SHRINK=1``: let hypothesis shrink a failure to a minimal sequence;
- ``CINDERBLOCK_MODEL_FRESH=1``: other sequences than the derandomized ones (pytest's
  ``--hypothesis-seed=N`` makes such a run repeatable);
- ``CINDERBLOCK_MODEL_VERBOSE=1`` (with ``-s``): print the tour and every sequence run.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from cinderblock.audit.log import aggregate_events
from cinderblock.replay.verify import verify
from cinderblock.wire.microversion import MAX_VERSION
from tests.e2e.conftest import System
from tests.helpers.cinder import other_backend
from tests.helpers.client import CinderClient, Reply
from tests.helpers.model import Seen, caught_up, differences, observe, rebuilt_row, rendered

T = TypeVar("T")

EXAMPLES = int(os.environ.get("CINDERBLOCK_MODEL_EXAMPLES", "30"))
STEPS = int(os.environ.get("CINDERBLOCK_MODEL_STEPS", "50"))
SHRINK = os.environ.get("CINDERBLOCK_MODEL_SHRINK", "") not in ("", "0")
FRESH = os.environ.get("CINDERBLOCK_MODEL_FRESH", "") not in ("", "0")

# Statuses a saga moves on by itself: a step waits until none is left.
TRANSIENT = {
    "creating",
    "extending",
    "deleting",
    "retyping",
    "downloading",
    "uploading",
    "reverting",
    "maintenance",
}
MOVING = {"starting", "migrating"}
SNAPSHOT_TRANSIENT = {"creating", "deleting"}
DELETABLE = {"available", "error", "error_extending"}
CONNECTOR = {"host": "compute-1", "mountpoint": "/dev/vdb", "initiator": "iqn.model"}

pick = st.integers(min_value=0, max_value=2**16)
failing = st.integers(0, 3).map(lambda n: n == 0)  # a saga step fails 1 in 4


def choose(items: list[T], index: int) -> T:
    """The item at a drawn index, in the model's order (creation order, never the random
    ids' order, so that a derandomized run makes the same choices every time)."""
    return items[index % len(items)]


def when(enabled: Callable[[Any], Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A guard inside the rule instead of a hypothesis precondition: whether a command
    has a valid target depends on what the live system did (a saga's outcome, a quota
    reservation settling), and hypothesis requires the rules it may choose from to be the
    same whenever it replays the same choices. A rule without a target is a no-op."""

    def decorate(step: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(step)
        def guarded(self: Any, **kwargs: Any) -> None:
            if enabled(self):
                step(self, **kwargs)
            else:
                self.skipped[step.__name__] += 1

        return guarded

    return decorate


class RefusedError(AssertionError):
    """A command the model holds valid got an answer Cinder would not give it."""


def machine_for(system: System, loop: asyncio.AbstractEventLoop, found: list[Any]) -> type:
    """The state machine class, bound to the running system and the session loop;
    ``found`` collects every example's records for the report."""

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=120)

    class VolumeLife(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.project = uuid.uuid4().hex
            self.client: CinderClient = system.client.as_(
                project_id=self.project, version=str(MAX_VERSION)
            )
            self.volumes: dict[str, dict[str, Any]] = {}  # as last shown
            self.snapshots: dict[str, dict[str, Any]] = {}
            self.types: dict[str, dict[str, Any]] = {}  # name -> type
            self.readonly: dict[str, bool] = {}
            self.api_attachments: dict[str, str] = {}  # attachment id -> volume id
            self.used_types: set[str] = set()
            self.skipped: Counter[str] = Counter()
            self.records: list[Seen] = []
            self.steps: list[str] = []
            system.faults("")

        # ------------------------------------------------------------ plumbing

        def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Reply:
            return run(self.client.request(method, path, body=body, **kw))

        def expect(self, reply: Reply, *codes: int) -> Reply:
            if reply.status not in codes:
                raise RefusedError(f"{self.steps[-1]}: {reply.status} {reply.text}")
            if reply.status >= 400:
                self.steps[-1] += f" -> {reply.status}"  # a refusal the model expected
            return reply

        def made(self, reply: Reply, key: str) -> str:
            """The id a 202 create answered with, named in the step for the story."""
            made: str = reply.json[key]["id"]
            self.steps[-1] += f" -> {made}"
            return made

        def act(self, vid: str, body: dict[str, Any], *codes: int) -> Reply:
            return self.expect(run(self.client.action(vid, body)), *codes)

        def step(self, text: str) -> None:
            self.steps.append(text)

        def settle(self) -> None:
            """Record every volume as the command left it (read-your-writes: often in the
            transient status a saga is about to end), wait until no saga of this project
            is under way and the projector has applied the whole log, then refresh the
            model and record every volume again."""
            run(self._settle())

        async def _record(self) -> None:
            for vid in self.volumes:
                seen = await observe(system.pool, self.client, vid, self.steps[-1])
                if seen is None:
                    continue
                if self.volumes[vid]:
                    # The view has no attach_status; the rules need it.
                    self.volumes[vid]["attach_status"] = seen.row["attach_status"]
                if seen not in self.records:
                    self.records.append(seen)

        async def _settle(self) -> None:
            await self._record()

            async def quiet() -> bool:
                for vid in list(self.volumes):
                    shown = await self.client.volume(vid)
                    if shown is None:
                        del self.volumes[vid]
                        self.readonly.pop(vid, None)
                        continue
                    if shown["status"] in TRANSIENT or shown["migration_status"] in MOVING:
                        return False
                    self.volumes[vid] = shown
                    self.used_types.add(shown["volume_type"])
                for sid in list(self.snapshots):
                    reply = await self.client.request("GET", f"/snapshots/{sid}")
                    if reply.status == 404:
                        del self.snapshots[sid]
                        continue
                    snap = reply.json["snapshot"]
                    if snap["status"] in SNAPSHOT_TRANSIENT:
                        return False
                    self.snapshots[sid] = snap
                quota = await self.client.request(
                    "GET", f"/os-quota-sets/{self.project}?usage=true"
                )
                if any(
                    isinstance(u, dict) and u.get("reserved")
                    for u in quota.json["quota_set"].values()
                ):
                    return False  # a saga has not yet committed or released its reservation
                return await caught_up(system.pool)

            await system.projected.until(quiet, timeout=60)
            await self._record()
            listed = await self.client.request("GET", "/attachments")
            live = {a["id"] for a in listed.json["attachments"]}
            self.api_attachments = {
                aid: vid for aid, vid in self.api_attachments.items() if aid in live
            }

        def with_fault(self, operation: str, fail: bool) -> None:
            system.faults(f"{operation}=fail" if fail else "")

        def volumes_where(self, **want: Any) -> list[str]:
            return [
                vid
                for vid, v in self.volumes.items()
                if all(
                    (v[k] in w) if isinstance(w, set | frozenset) else v[k] == w
                    for k, w in want.items()
                )
            ]

        def usage(self) -> dict[str, Any]:
            reply = self.call("GET", f"/os-quota-sets/{self.project}?usage=true")
            quota: dict[str, Any] = self.expect(reply, 200).json["quota_set"]
            return quota

        def fits(self, **more: int) -> bool:
            quota = self.usage()
            for key, extra in more.items():
                limit = quota[key]["limit"]
                used = quota[key]["in_use"] + quota[key]["reserved"]
                if limit != -1 and used + extra > limit:
                    return False
            return True

        # ------------------------------------------------------------- creates

        @initialize(size=st.integers(1, 2))
        def first_volume(self, size: int) -> None:
            self.step(f"create size={size}")
            reply = self.call("POST", "/volumes", {"volume": {"size": size, "name": "v0"}})
            self.volumes[self.made(self.expect(reply, 202), "volume")] = {}
            self.settle()

        @rule(size=st.integers(1, 2), fail=failing, typed=pick, use_type=st.booleans())
        def create(self, size: int, fail: bool, typed: int, use_type: bool) -> None:
            body: dict[str, Any] = {"size": size, "name": f"v{len(self.steps)}"}
            if use_type and self.types:
                body["volume_type"] = choose(list(self.types), typed)
            self.step(f"create {body} fail={fail}")
            fits = self.fits(volumes=1, gigabytes=size)
            self.with_fault("create", fail)
            try:
                reply = self.expect(
                    self.call("POST", "/volumes", {"volume": body}), 202 if fits else 413
                )
                if reply.status == 202:
                    self.volumes[self.made(reply, "volume")] = {}
                self.settle()
            finally:
                system.faults("")
            if reply.status == 202:
                made = self.volumes[reply.json["volume"]["id"]]
                assert made["status"] == ("error" if fail else "available"), made

        @rule(which=pick, fail=failing)
        @when(lambda self: any(s["status"] == "available" for s in self.snapshots.values()))
        def create_from_snapshot(self, which: int, fail: bool) -> None:
            ready = [sid for sid, s in self.snapshots.items() if s["status"] == "available"]
            sid = choose(ready, which)
            size = self.snapshots[sid]["size"]
            self.step(f"create from snapshot {sid} fail={fail}")
            fits = self.fits(volumes=1, gigabytes=size)
            self.with_fault("create", fail)
            try:
                body = {"volume": {"snapshot_id": sid}}
                reply = self.expect(self.call("POST", "/volumes", body), 202 if fits else 413)
                if reply.status == 202:
                    self.volumes[self.made(reply, "volume")] = {}
                self.settle()
            finally:
                system.faults("")
            if reply.status == 202:
                made = self.volumes[reply.json["volume"]["id"]]
                source = self.volumes[self.snapshots[sid]["volume_id"]]
                # The new volume goes to the snapshot's pool, which a migration may have
                # left unsuitable for the type (Cinder: "No valid backend", error).
                ok = not fail and self.suits(source["volume_type"], source)
                assert made["status"] == ("available" if ok else "error"), made
                assert made["snapshot_id"] == sid

        def suits(self, type_name: str, volume: dict[str, Any]) -> bool:
            """Whether the volume's pool suits the type (its backend; multiattach pools
            are file-b's)."""
            vtype = self.types.get(type_name)
            if vtype is None:
                return True  # the default type asks for nothing
            host = volume["os-vol-host-attr:host"] or ""
            backend = vtype["backend"] or ("file-b" if vtype["multiattach"] else None)
            return backend is None or f"@{backend}#" in host

        # ---------------------------------------------------- volume commands

        @rule(which=pick, fail=failing)
        @when(lambda self: self.volumes_where(status={"available", "in-use"}))
        def extend(self, which: int, fail: bool) -> None:
            vid = choose(self.volumes_where(status={"available", "in-use"}), which)
            before = self.volumes[vid]
            new_size = before["size"] + 1
            self.step(f"extend {vid} to {new_size} fail={fail}")
            fits = self.fits(gigabytes=1)
            self.with_fault("extend", fail)
            try:
                body = {"os-extend": {"new_size": new_size}}
                reply = self.act(vid, body, 202 if fits else 413)
                self.settle()
            finally:
                system.faults("")
            after = self.volumes[vid]
            if reply.status == 202 and not before["os-vol-host-attr:host"]:
                # Never placed (a failed create reset): no valid backend, as Cinder's
                # scheduler answers, back to the status before (the minimal sequence of
                # test_extend_of_a_volume_never_placed_ends, which this model found).
                assert (after["size"], after["status"]) == (before["size"], before["status"])
            elif reply.status == 202 and not fail:
                # By attachments (spec 6.1): a reset may have left available with some.
                attached = bool(before["attachments"]) or vid in self.api_attachments.values()
                status = "in-use" if attached else "available"
                assert (after["size"], after["status"]) == (new_size, status), after
            elif reply.status == 202:
                assert (after["size"], after["status"]) == (before["size"], "error_extending")

        @rule(which=pick, bootable=st.booleans())
        @when(lambda self: self.volumes)
        def set_bootable(self, which: int, bootable: bool) -> None:
            vid = choose(list(self.volumes), which)
            self.step(f"set_bootable {vid} {bootable}")
            self.act(vid, {"os-set_bootable": {"bootable": bootable}}, 200)
            self.settle()
            assert self.volumes[vid]["bootable"] == str(bootable).lower()

        @rule(
            which=pick,
            name=st.sampled_from(["a", "b", ""]),
            metadata=st.dictionaries(st.sampled_from(["k", "tier"]), st.sampled_from(["1", "x"])),
        )
        @when(lambda self: self.volumes)
        def update(self, which: int, name: str, metadata: dict[str, str]) -> None:
            vid = choose(list(self.volumes), which)
            self.step(f"update {vid} name={name!r} metadata={metadata}")
            body = {"volume": {"name": name, "description": f"d-{name}", "metadata": metadata}}
            self.expect(self.call("PUT", f"/volumes/{vid}", body), 200)
            self.settle()
            shown = self.volumes[vid]
            assert shown["name"] == name
            admin = {"readonly", "attached_mode"}  # admin metadata the view merges in
            assert {k: v for k, v in shown["metadata"].items() if k not in admin} == metadata

        @rule(which=pick, image_name=st.sampled_from(["cirros", "fedora"]))
        @when(lambda self: self.volumes)
        def set_image_metadata(self, which: int, image_name: str) -> None:
            vid = choose(list(self.volumes), which)
            self.step(f"set_image_metadata {vid} {image_name}")
            body = {"os-set_image_metadata": {"metadata": {"image_name": image_name}}}
            self.act(vid, body, 200)
            self.settle()
            assert self.volumes[vid]["volume_image_metadata"]["image_name"] == image_name

        @rule(which=pick)
        @when(lambda self: any(v.get("volume_image_metadata") for v in self.volumes.values()))
        def unset_image_metadata(self, which: int) -> None:
            vid = choose(
                [k for k, v in self.volumes.items() if v.get("volume_image_metadata")], which
            )
            key = sorted(self.volumes[vid]["volume_image_metadata"])[0]
            self.step(f"unset_image_metadata {vid} {key}")
            self.act(vid, {"os-unset_image_metadata": {"key": key}}, 200)
            self.settle()
            assert key not in self.volumes[vid].get("volume_image_metadata", {})

        @rule(which=pick, readonly=st.booleans())
        @when(lambda self: self.volumes_where(status="available"))
        def readonly_flag(self, which: int, readonly: bool) -> None:
            vid = choose(self.volumes_where(status="available"), which)
            self.step(f"update_readonly_flag {vid} {readonly}")
            self.act(vid, {"os-update_readonly_flag": {"readonly": readonly}}, 202)
            self.readonly[vid] = readonly
            self.settle()

        def _resettable(self) -> list[str]:
            """Volumes a saga failure, an attachment or a reset left somewhere else than
            plain available (an admin's reason to reset)."""
            return [
                vid
                for vid, v in self.volumes.items()
                if v["status"] != "available"
                or v["attach_status"] != "detached"
                or v["migration_status"] == "error"
            ]

        @rule(
            which=pick,
            change=st.sampled_from(
                [
                    {"status": "available"},
                    {"status": "error"},
                    {"status": "available", "attach_status": "detached"},
                    {"migration_status": "error"},
                ]
            ),
        )
        @when(lambda self: self._resettable())
        def reset_status(self, which: int, change: dict[str, str]) -> None:
            vid = choose(self._resettable(), which)
            self.step(f"reset_status {vid} {change}")
            self.act(vid, {"os-reset_status": change}, 202)
            self.settle()
            assert self.volumes[vid]["status"] == change.get("status", self.volumes[vid]["status"])

        # ---------------------------------------------------------- attaching

        def _reservable(self) -> list[str]:
            return [
                vid
                for vid, v in self.volumes.items()
                if v["status"] == "available" or (v["status"] == "in-use" and v["multiattach"])
            ]

        @rule(which=pick)
        @when(lambda self: self._reservable())
        def reserve(self, which: int) -> None:
            vid = choose(self._reservable(), which)
            self.step(f"os-reserve {vid}")
            self.act(vid, {"os-reserve": {}}, 202)
            self.settle()
            assert self.volumes[vid]["status"] == "attaching"

        @rule(which=pick)
        @when(lambda self: self.volumes_where(status="attaching"))
        def unreserve(self, which: int) -> None:
            vid = choose(self.volumes_where(status="attaching"), which)
            self.step(f"os-unreserve {vid}")
            self.act(vid, {"os-unreserve": {}}, 202)
            self.settle()
            assert self.volumes[vid]["status"] in ("available", "in-use")

        def _attachable(self) -> list[str]:
            return [
                vid
                for vid, v in self.volumes.items()
                if v["status"] in ("available", "attaching")
                or (v["status"] == "in-use" and v["multiattach"])
            ]

        @rule(which=pick)
        @when(lambda self: self._attachable())
        def os_attach(self, which: int) -> None:
            vid = choose(self._attachable(), which)
            mode = "ro" if self.readonly.get(vid) else "rw"
            self.step(f"os-attach {vid} mode={mode}")
            body = {
                "os-attach": {
                    "instance_uuid": str(uuid.uuid4()),
                    "mountpoint": "/dev/vdb",
                    "mode": mode,
                }
            }
            self.act(vid, body, 202)
            self.settle()
            assert self.volumes[vid]["status"] == "in-use"

        def _legacy_attached(self) -> list[tuple[str, str]]:
            return [
                (vid, a["attachment_id"])
                for vid, v in self.volumes.items()
                if v["status"] in ("in-use", "detaching")
                for a in v["attachments"]
                if a["attachment_id"] not in self.api_attachments
            ]

        @rule(which=pick)
        @when(lambda self: self._legacy_attached())
        def os_detach(self, which: int) -> None:
            vid, aid = choose(self._legacy_attached(), which)
            self.step(f"os-detach {vid} {aid}")
            self.act(vid, {"os-detach": {"attachment_id": aid}}, 202)
            self.settle()
            assert aid not in {a["attachment_id"] for a in self.volumes[vid]["attachments"]}

        def _connectable(self) -> list[str]:
            """Reservable, placed (a volume without a backend cannot be connected: 400),
            and not still attached (a reset to available keeps the attachments:
            connecting again is Cinder's 409 ConflictNovaUsingAttachment unless the volume
            is multiattach)."""
            return [
                vid
                for vid in self._reservable()
                if self.volumes[vid]["os-vol-host-attr:host"]
                and (self.volumes[vid]["multiattach"] or not self.volumes[vid]["attachments"])
            ]

        @rule(which=pick, complete=st.booleans())
        @when(lambda self: self._connectable())
        def attachment_create(self, which: int, complete: bool) -> None:
            vid = choose(self._connectable(), which)
            self.step(f"attachments create {vid} complete={complete}")
            body = {"attachment": {"volume_uuid": vid, "instance_uuid": str(uuid.uuid4())}}
            made = self.expect(self.call("POST", "/attachments", body), 200)
            aid = made.json["attachment"]["id"]
            self.api_attachments[aid] = vid
            if complete:
                update = {"attachment": {"connector": CONNECTOR}}
                self.expect(self.call("PUT", f"/attachments/{aid}", update), 200)
                done = self.call("POST", f"/attachments/{aid}/action", {"os-complete": None})
                self.expect(done, 204)
            self.settle()
            want = (
                "in-use"
                if complete
                else {"available": "reserved"}.get(
                    self.volumes[vid]["status"], self.volumes[vid]["status"]
                )
            )
            assert self.volumes[vid]["status"] in (want, "reserved", "in-use")

        @rule(which=pick)
        @when(lambda self: self.api_attachments)
        def attachment_delete(self, which: int) -> None:
            aid = choose(list(self.api_attachments), which)
            vid = self.api_attachments[aid]
            self.step(f"attachments delete {aid} of {vid}")
            self.expect(self.call("DELETE", f"/attachments/{aid}"), 200)
            self.settle()

        @rule(which=pick)
        @when(lambda self: self.volumes_where(status="in-use", attach_status="attached"))
        def begin_detaching(self, which: int) -> None:
            vid = choose(self.volumes_where(status="in-use", attach_status="attached"), which)
            self.step(f"os-begin_detaching {vid}")
            self.act(vid, {"os-begin_detaching": {}}, 202)
            self.settle()
            assert self.volumes[vid]["status"] == "detaching"

        @rule(which=pick)
        @when(lambda self: self.volumes_where(status="detaching"))
        def roll_detaching(self, which: int) -> None:
            vid = choose(self.volumes_where(status="detaching"), which)
            self.step(f"os-roll_detaching {vid}")
            self.act(vid, {"os-roll_detaching": {}}, 202)
            self.settle()
            assert self.volumes[vid]["status"] == "in-use"

        # ------------------------------------------------- moving the bytes

        def _retypable(self) -> list[tuple[str, str]]:
            return [
                (vid, name)
                for vid in self.volumes_where(status={"available", "in-use"})
                if (v := self.volumes[vid])["migration_status"] not in MOVING
                for name, t in self.types.items()
                if name != v["volume_type"]
                and (v["status"] == "available" or t["multiattach"] == v["multiattach"])
            ]

        @rule(which=pick, policy=st.sampled_from(["never", "on-demand"]), fail=failing)
        @when(lambda self: self._retypable())
        def retype(self, which: int, policy: str, fail: bool) -> None:
            vid, name = choose(self._retypable(), which)
            before = self.volumes[vid]
            self.step(f"retype {vid} to {name} policy={policy} fail={fail}")
            self.with_fault("migrate", fail)
            try:
                body = {"os-retype": {"new_type": name, "migration_policy": policy}}
                self.act(vid, body, 202)
                self.settle()
            finally:
                system.faults("")
            after = self.volumes[vid]
            assert after["status"] == before["status"], after
            # In place when the pool suits the new type; else a move, which "never"
            # refuses, snapshots of the volume refuse and an injected copy failure undoes.
            # A volume never placed has no pool at all: no valid backend, refused.
            snapshots = any(s["volume_id"] == vid for s in self.snapshots.values())
            placed = bool(before["os-vol-host-attr:host"])
            stays = not placed or (
                not self.suits(name, before) and (policy == "never" or snapshots or fail)
            )
            assert after["volume_type"] == (before["volume_type"] if stays else name), after

        def _migratable(self) -> list[str]:
            with_snapshots = {s["volume_id"] for s in self.snapshots.values()}
            return [
                vid
                for vid in self.volumes_where(status={"available", "in-use"})
                if vid not in with_snapshots
                and self.volumes[vid]["migration_status"] not in MOVING
                and self.volumes[vid]["os-vol-host-attr:host"]
            ]

        @rule(which=pick, fail=failing, lock=st.booleans())
        @when(lambda self: self._migratable())
        def migrate(self, which: int, fail: bool, lock: bool) -> None:
            vid = choose(self._migratable(), which)
            before = self.volumes[vid]
            target = other_backend(system, before["os-vol-host-attr:host"])
            self.step(f"migrate {vid} to {target} lock={lock} fail={fail}")
            self.with_fault("migrate", fail)
            try:
                body = {"os-migrate_volume": {"host": target, "lock_volume": lock}}
                self.act(vid, body, 202)
                self.settle()
            finally:
                system.faults("")
            after = self.volumes[vid]
            assert after["status"] == before["status"], after
            assert after["migration_status"] == ("error" if fail else "success"), after

        # ----------------------------------------------------------- snapshots

        def _placed(self) -> list[str]:
            """Available or in-use and placed (a failed create reset to available has no
            host: a snapshot of it is Cinder's 400)."""
            return [
                vid
                for vid in self.volumes_where(status={"available", "in-use"})
                if self.volumes[vid]["os-vol-host-attr:host"]
            ]

        @rule(which=pick, fail=failing)
        @when(lambda self: self._placed())
        def snapshot_create(self, which: int, fail: bool) -> None:
            vid = choose(self._placed(), which)
            volume = self.volumes[vid]
            self.step(f"snapshot create of {vid} fail={fail}")
            fits = self.fits(snapshots=1, gigabytes=volume["size"])
            self.with_fault("snapshot", fail)
            try:
                body = {"snapshot": {"volume_id": vid, "force": True}}
                reply = self.expect(self.call("POST", "/snapshots", body), 202 if fits else 413)
                if reply.status == 202:
                    self.snapshots[self.made(reply, "snapshot")] = {}
                self.settle()
            finally:
                system.faults("")
            if reply.status == 202:
                snap = self.snapshots[reply.json["snapshot"]["id"]]
                assert snap["status"] == ("error" if fail else "available"), snap

        @rule(which=pick, fail=failing)
        @when(
            lambda self: any(s["status"] in ("available", "error") for s in self.snapshots.values())
        )
        def snapshot_delete(self, which: int, fail: bool) -> None:
            done = [k for k, s in self.snapshots.items() if s["status"] in ("available", "error")]
            sid = choose(done, which)
            self.step(f"snapshot delete {sid} fail={fail}")
            self.with_fault("delete_snapshot", fail)
            try:
                self.expect(self.call("DELETE", f"/snapshots/{sid}"), 202)
                self.settle()
            finally:
                system.faults("")
            if fail:
                assert self.snapshots[sid]["status"] == "error_deleting", self.snapshots[sid]
            else:
                assert sid not in self.snapshots

        # -------------------------------------------------------------- delete

        def _deletable(self) -> list[str]:
            with_snapshots = {s["volume_id"] for s in self.snapshots.values()}
            return [
                vid
                for vid, v in self.volumes.items()
                if v["status"] in DELETABLE
                and v["attach_status"] != "attached"
                and v["migration_status"] not in MOVING
                and vid not in with_snapshots
            ]

        @rule(which=pick, fail=failing)
        @when(lambda self: self._deletable())
        def delete(self, which: int, fail: bool) -> None:
            vid = choose(self._deletable(), which)
            placed = bool(self.volumes[vid]["os-vol-host-attr:host"])
            self.step(f"delete {vid} fail={fail}")
            self.with_fault("delete", fail)
            try:
                self.expect(self.call("DELETE", f"/volumes/{vid}"), 202)
                self.settle()
            finally:
                system.faults("")
            if fail and placed:
                assert self.volumes[vid]["status"] == "error_deleting", self.volumes[vid]
            else:
                assert vid not in self.volumes

        # ------------------------------------------------- types and quotas

        @initialize(kind=st.sampled_from(["file-b", "multiattach", "plain"]))
        def first_type(self, kind: str) -> None:
            self.new_type(kind)

        @precondition(lambda self: len(self.types) < 4)
        @rule(kind=st.sampled_from(["plain", "file-a", "file-b", "multiattach"]))
        def new_type(self, kind: str) -> None:
            specs = {
                "plain": {},
                "file-a": {"volume_backend_name": "file-a"},
                "file-b": {"volume_backend_name": "file-b"},
                "multiattach": {"multiattach": "<is> True"},
            }[kind]
            name = f"m-{kind}-{uuid.uuid4().hex[:6]}"
            self.step(f"type create {name} {specs}")
            body = {"volume_type": {"name": name, "extra_specs": specs}}
            made = self.expect(self.call("POST", "/types", body), 200).json["volume_type"]
            self.types[name] = {
                "id": made["id"],
                "multiattach": kind == "multiattach",
                "backend": specs.get("volume_backend_name"),
            }
            self.settle()

        @precondition(lambda self: self.types)
        @rule(which=pick, description=st.sampled_from(["gold", "silver"]), spec=st.booleans())
        def change_type(self, which: int, description: str, spec: bool) -> None:
            name = choose(list(self.types), which)
            tid = self.types[name]["id"]
            self.step(f"type change {name} description={description} spec={spec}")
            body = {"volume_type": {"description": description}}
            self.expect(self.call("PUT", f"/types/{tid}", body), 200)
            # The extra specs of a type in use are frozen (Cinder's 400 "is in use").
            if name not in self.used_types:
                specs = {"extra_specs": {"model:tier": description}}
                if spec:
                    self.expect(self.call("POST", f"/types/{tid}/extra_specs", specs), 200)
                else:
                    gone = self.call("DELETE", f"/types/{tid}/extra_specs/model:tier")
                    self.expect(gone, 202, 404)
            self.settle()

        @rule(volumes=st.integers(0, 4), gigabytes=st.integers(0, 8))
        def quota_limits(self, volumes: int, gigabytes: int) -> None:
            quota = self.usage()
            used_volumes = quota["volumes"]["in_use"] + quota["volumes"]["reserved"]
            used_gb = quota["gigabytes"]["in_use"] + quota["gigabytes"]["reserved"]
            limits = {"volumes": used_volumes + volumes, "gigabytes": used_gb + gigabytes}
            self.step(f"quota limits {limits}")
            url = f"{system.url}/v3/os-quota-sets/{self.project}"
            reply = run(system.client.request("PUT", "", url=url, body={"quota_set": limits}))
            self.expect(reply, 200)
            self.settle()

        # ----------------------------------------------------------- checks

        def teardown(self) -> None:
            system.faults("")
            found.append((list(self.steps), list(self.records), sum(self.skipped.values())))
            if not self.steps:
                return
            run(self._check())

        async def _check(self) -> None:
            checked = await verify(system.settings.database_url)
            if not checked.identical:
                raise AssertionError(
                    self.story("the live read models differ from a replay of the log")
                    + "\n  ".join(["", *map(str, checked.differences)])
                )
            problems = []
            async with system.pool.acquire() as conn:
                for vid in {s.volume_id for s in self.records}:
                    events = await aggregate_events(conn, [uuid.UUID(vid)])
                    for seen in self.records:
                        if seen.volume_id != vid:
                            continue
                        for diff in await differences(conn, seen, events, system.url):
                            problems.append(f"{vid} v{seen.version} after {seen.step!r}: {diff}")
            if problems:
                raise AssertionError(
                    self.story("the state rebuilt at a version differs from the live row or GET")
                    + "\n  ".join(["", *problems])
                )

        def story(self, what: str) -> str:
            return f"{what}\nafter the sequence:\n  " + "\n  ".join(self.steps) + "\ndifferences:"

    return VolumeLife


# One scripted sequence through every rule, success and failure of every saga step, so
# that each command is covered on every run whatever the random sequences draw (indexes
# are into the rule's own list of valid targets, in creation order).
TOUR: list[tuple[str, dict[str, Any]]] = [
    ("first_type", {"kind": "file-b"}),
    ("first_volume", {"size": 1}),
    ("create", {"size": 1, "fail": False, "typed": 0, "use_type": True}),
    ("set_bootable", {"which": 0, "bootable": True}),
    ("update", {"which": 0, "name": "a", "metadata": {"k": "1"}}),
    ("set_image_metadata", {"which": 0, "image_name": "cirros"}),
    ("unset_image_metadata", {"which": 0}),
    ("extend", {"which": 0, "fail": False}),
    ("extend", {"which": 0, "fail": True}),
    ("reset_status", {"which": 0, "change": {"status": "available"}}),
    ("readonly_flag", {"which": 0, "readonly": True}),
    ("readonly_flag", {"which": 0, "readonly": False}),
    ("reserve", {"which": 0}),
    ("unreserve", {"which": 0}),
    ("reserve", {"which": 0}),
    ("os_attach", {"which": 0}),
    ("begin_detaching", {"which": 0}),
    ("roll_detaching", {"which": 0}),
    ("os_detach", {"which": 0}),
    ("attachment_create", {"which": 1, "complete": False}),
    ("attachment_delete", {"which": 0}),
    ("attachment_create", {"which": 1, "complete": True}),
    ("attachment_delete", {"which": 0}),
    ("new_type", {"kind": "file-a"}),
    ("change_type", {"which": 1, "description": "gold", "spec": True}),
    ("migrate", {"which": 0, "fail": False, "lock": True}),
    ("migrate", {"which": 0, "fail": True, "lock": False}),
    ("retype", {"which": 0, "policy": "on-demand", "fail": False}),
    ("retype", {"which": 0, "policy": "on-demand", "fail": True}),
    ("snapshot_create", {"which": 0, "fail": False}),
    ("snapshot_create", {"which": 0, "fail": True}),
    ("create_from_snapshot", {"which": 0, "fail": False}),
    ("create_from_snapshot", {"which": 0, "fail": True}),
    ("snapshot_delete", {"which": 0, "fail": True}),
    ("snapshot_delete", {"which": 0, "fail": False}),
    ("quota_limits", {"volumes": 0, "gigabytes": 0}),
    ("create", {"size": 1, "fail": False, "typed": 0, "use_type": False}),
    ("quota_limits", {"volumes": 4, "gigabytes": 8}),
    ("delete", {"which": 0, "fail": True}),
    ("delete", {"which": 0, "fail": False}),
]


async def test_a_tour_of_every_command(system: System) -> None:
    found: list[Any] = []
    machine = machine_for(system, asyncio.get_running_loop(), found)

    def tour() -> Any:
        life = machine()
        try:
            for name, kwargs in TOUR:
                getattr(life, name)(**kwargs)
        except BaseException:
            system.faults("")
            raise
        life.teardown()
        return life

    life = await asyncio.to_thread(tour)
    if os.environ.get("CINDERBLOCK_MODEL_VERBOSE"):
        print("\ntour:\n  " + "\n  ".join(life.steps))
    assert not life.skipped, f"the tour found no target for {dict(life.skipped)}"
    assert len(life.steps) == len(TOUR)


async def test_extend_of_a_volume_never_placed_ends(system: System) -> None:
    """The minimal sequence the model found (the extend stayed extending with 1 GiB
    reserved forever): create (its driver step fails: error, no host), reset status to
    available, extend. The saga must end the extend (a completion or a compensation) and
    settle the reservation, as for every other volume: Cinder's scheduler fails it back
    (NoValidBackend), and so does this one."""
    client = system.client.as_(project_id=uuid.uuid4().hex, version=str(MAX_VERSION))
    system.faults("create=fail")
    try:
        created = await client.create_volume(1)
        await system.until_status(created["id"], "error")
    finally:
        system.faults("")
    vid = created["id"]
    reset = await client.action(vid, {"os-reset_status": {"status": "available"}})
    assert reset.status == 202, reset.text
    extend = await client.action(vid, {"os-extend": {"new_size": 2}})
    assert extend.status == 202, extend.text

    async def ended() -> dict[str, Any] | None:
        shown = await client.volume(vid)
        return shown if shown is not None and shown["status"] != "extending" else None

    volume = await system.projected.until(ended, timeout=10)
    assert volume["status"] in ("available", "error_extending"), volume
    usage = await client.request("GET", f"/os-quota-sets/{client.project_id}?usage=true")
    assert usage.json["quota_set"]["gigabytes"]["reserved"] == 0


async def test_random_histories_replay_and_rebuild_as_they_were_lived(
    system: System, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = asyncio.get_running_loop()
    found: list[Any] = []
    machine = machine_for(system, loop, found)
    phases = list(Phase) if SHRINK else [Phase.explicit, Phase.reuse, Phase.generate]
    options = settings(
        phases=phases,
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        derandomize=not FRESH,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    try:
        await asyncio.to_thread(run_state_machine_as_test, machine, settings=options)
    finally:
        system.faults("")
    records = [seen for _, seen_list, _ in found for seen in seen_list]
    steps = sum(len(s) for s, _, _ in found)
    idle = sum(n for _, _, n in found)
    assert records, "no history recorded"
    # The command itself: the last version of a few volumes of the last sequences, and a
    # few versions caught in a transient status.
    monkeypatch.setenv("CINDERBLOCK_DATABASE_URL", system.settings.database_url)
    monkeypatch.setenv("CINDERBLOCK_LOG_LEVEL", "WARNING")
    last: dict[str, Seen] = {}
    for seen in records:
        last[seen.volume_id] = seen
    passing = [r for r in records if r.shown and r.shown["status"] in TRANSIENT]
    await _state_command_agrees(system, list(last.values())[-4:] + passing[-4:], capsys)
    kinds = Counter(
        step.split()[0] + (" fail" if "fail=True" in step else "")
        for s, _, _ in found
        for step in s
    )
    against_get = sum(r.shown is not None for r in records)
    with capsys.disabled():
        if os.environ.get("CINDERBLOCK_MODEL_VERBOSE"):
            for number, (done, _, _) in enumerate(found):
                print(f"\nsequence {number}:\n  " + "\n  ".join(done))
        print(
            f"\nmodel-based: {len(found)} sequences, {steps} steps ({idle} rules without a "
            f"target skipped), {len(records)} versions checked ({against_get} against the GET): "
            + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        )


async def _state_command_agrees(
    system: System, seen: list[Seen], capsys: pytest.CaptureFixture[str]
) -> None:
    from cinderblock.cli.main import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        for record in seen:
            args = [
                "state",
                record.volume_id,
                "--version",
                str(record.version),
                "--base-url",
                system.url,
            ]
            capsys.readouterr()
            code = await asyncio.to_thread(main, args)
            out = capsys.readouterr().out
            assert code == 0, out
            async with system.pool.acquire() as conn:
                events = await aggregate_events(conn, [uuid.UUID(record.volume_id)])
                row = await rebuilt_row(conn, record, events)
            assert row is not None
            assert json.loads(out)["volume"] == rendered(row, system.url)
            if record.shown is not None:
                assert json.loads(out)["volume"] == record.shown
    finally:
        root.handlers[:], root.level = handlers, level
