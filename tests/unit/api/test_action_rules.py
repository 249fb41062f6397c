"""Each row of the action table says what its handler does: the policy rules it asks (over
the row's scenarios, exactly the row's ``rules``) and its success status.

Handlers run on fakes: a policy that records what it is asked and allows it, a command
service whose commands call the authorize callbacks they are given (``act`` also applies
the change to an in-memory ``Volume`` built from its own events), an image service that
knows one image, a read model that shows the volume and an export saga that succeeds.
No network, no database; nothing here is Cinder behaviour (the e2e tests check that),
only that the table and the handlers agree.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cinderblock.api.action_table import ACTION_TABLE
from cinderblock.api.context import RequestContext
from cinderblock.config.settings import Settings
from cinderblock.domain.commands import VolumeCommand
from cinderblock.domain.status import AttachStatus, Status
from cinderblock.domain.volume import Volume
from cinderblock.store.eventstore import Position
from cinderblock.wire.microversion import MIN_VERSION, APIVersion
from tests.unit.domain import given

pytestmark = pytest.mark.unit

AT = Position(tx_id=1, position=1)
IMAGE_ID = str(uuid.uuid4())
OTHER_VOLUME = str(uuid.uuid4())
ATTACHMENT = str(uuid.uuid4())
DESTINATION = "cinderblock@file-b"  # a configured backend the volume is not on


class RecordingPolicy:
    """Allows everything; remembers each rule asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def authorize(self, rule: str, creds: object, target: object) -> None:
        self.asked.append(rule)

    def allowed(self, rule: str, creds: object, target: object) -> bool:
        self.asked.append(rule)
        return True


@dataclass
class FakeType:
    multiattach: bool = False
    id: str = "type-id"
    name: str = "gold"


@dataclass
class FakeVolumes:
    """The command service's surface as handlers see it."""

    volume: Volume
    new_type: FakeType = field(default_factory=FakeType)

    async def get(self, caller: object, volume_id: str) -> Volume:
        return self.volume

    async def find_type(self, name: str, **_: object) -> FakeType:
        return self.new_type

    async def act(
        self,
        caller: object,
        volume_id: str,
        change: Callable[[Volume], Any],
        *,
        meta: object,
        authorize: Callable[[Volume], None] | None = None,
    ) -> tuple[Position, Any]:
        if authorize is not None:
            authorize(self.volume)
        return AT, change(self.volume)

    async def handle(
        self,
        caller: object,
        volume_id: str,
        command: VolumeCommand[Any],
        *,
        meta: object,
        authorize: Callable[[Volume], None] | None = None,
    ) -> tuple[Position, Any]:
        return await self.act(caller, volume_id, command.run, meta=meta, authorize=authorize)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """Any other command: its authorize callbacks on this volume, then a position."""

        async def command(*args: object, **kwargs: object) -> Position:
            for key, value in kwargs.items():
                if key.startswith("authorize") and callable(value):
                    arity = len(inspect.signature(value).parameters)
                    value(*[self.volume] * arity)
            return AT

        return command


class FakeImages:
    image = {
        "id": IMAGE_ID,
        "name": "cirros",
        "status": "active",
        "size": 1024,
        "min_disk": 0,
        "disk_format": "raw",
        "container_format": "bare",
    }

    async def get(self, image_id: str) -> dict[str, Any] | None:
        return dict(self.image) if image_id == IMAGE_ID else None

    async def create(self, spec: object, **_: object) -> None:
        return None

    async def delete(self, image_id: str) -> None:
        return None


@dataclass
class FakeDeps:
    volumes: FakeVolumes
    settings: Settings
    policy: RecordingPolicy = field(default_factory=RecordingPolicy)
    images: FakeImages = field(default_factory=FakeImages)
    pool: object = None
    nova: object = None

    async def read_your_write(self, at: Position, **_: object) -> bool:
        return True

    async def nova_allows(self, *_: object) -> None:
        return None


@dataclass(frozen=True)
class Case:
    key: str
    payload: Any
    volume: Callable[[], Volume] = given.available
    version: APIVersion = MIN_VERSION
    multiattach_type: bool = False


def in_use() -> Volume:
    return given.in_state(
        given.available(),
        Status.IN_USE,
        attachment_ids=[ATTACHMENT],
        attach_status=AttachStatus.ATTACHED,
    )


def detaching() -> Volume:
    return given.in_state(in_use(), Status.DETACHING)


def attaching() -> Volume:
    return given.in_state(given.available(), Status.ATTACHING)


def reserved() -> Volume:
    return given.in_state(given.available(), Status.RESERVED)


def with_image_metadata() -> Volume:
    return given.in_state(given.available(), Status.AVAILABLE, image_metadata={"k": "v"})


V = APIVersion
CASES = [
    Case("os-extend", {"new_size": 20}),
    Case("os-extend", {"new_size": 20}, in_use, V(3, 42)),
    Case("os-reset_status", {"status": "error"}),
    Case("revert", {"snapshot_id": str(uuid.uuid4())}, version=V(3, 40)),
    Case("os-set_image_metadata", {"metadata": {"k": "v"}}),
    Case("os-unset_image_metadata", {"key": "k"}, with_image_metadata),
    Case("os-show_image_metadata", None),
    Case("os-attach", {"instance_uuid": str(uuid.uuid4()), "mountpoint": "/dev/vdb"}),
    Case("os-detach", {"attachment_id": ATTACHMENT}, in_use),
    Case("os-unmanage", None),
    Case("os-force_detach", {"attachment_id": ATTACHMENT}, in_use),
    Case("os-retype", {"new_type": "gold"}),
    Case("os-retype", {"new_type": "gold"}, multiattach_type=True),
    Case("os-migrate_volume", {"host": DESTINATION}),
    Case("os-migrate_volume_completion", {"new_volume": OTHER_VOLUME}),
    Case("os-force_delete", {}),
    Case("os-set_bootable", {"bootable": True}),
    Case("os-volume_upload_image", {"image_name": "img"}),
    Case("os-volume_upload_image", {"image_name": "img", "visibility": "public"}, version=V(3, 1)),
    Case("os-reserve", None),
    Case("os-unreserve", None, attaching),
    Case("os-begin_detaching", None, in_use),
    Case("os-roll_detaching", None, detaching),
    Case("os-terminate_connection", {"connector": {}}, in_use),
    Case("os-initialize_connection", {"connector": {"host": "h"}}),
    Case("os-update_readonly_flag", {"readonly": True}),
    Case("os-reimage", {"image_id": IMAGE_ID}, version=V(3, 68)),
    Case("os-reimage", {"image_id": IMAGE_ID, "reimage_reserved": True}, reserved, V(3, 68)),
]


def _context(version: APIVersion) -> RequestContext:
    return RequestContext(
        request_id=f"req-{uuid.uuid4()}",
        global_request_id=None,
        user_id="user-a",
        project_id=given.PROJECT,
        roles=frozenset({"admin", "member", "reader"}),
        is_admin=True,
        version=version,
        base_url="http://cinder",
        project_in_url=given.PROJECT,
    )


async def _run(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, set[str]]:
    """The reply's status and the rules asked for one case."""
    spec = ACTION_TABLE[case.key]
    volume = case.volume()
    d = FakeDeps(
        volumes=FakeVolumes(volume, FakeType(multiattach=case.multiattach_type)),
        settings=Settings(data_dir=tmp_path),
    )

    async def read_row(*_: object, **__: object) -> dict[str, Any]:
        return {"project_id": volume.project_id, "image_metadata": {"k": "v"}}

    async def saga_succeeded(*_: object, **__: object) -> SimpleNamespace:
        connected = SimpleNamespace(connection_info={"driver_volume_type": "local"})
        return SimpleNamespace(succeeded=True, event=connected, at=AT)

    handler_module = inspect.getmodule(spec.handler)
    if hasattr(handler_module, "get_volume"):  # a read answered from the read model
        monkeypatch.setattr(handler_module, "get_volume", read_row)
    if hasattr(handler_module, "saga_succeeded"):  # a reply that waits for the export saga
        monkeypatch.setattr(handler_module, "saga_succeeded", saga_succeeded)
    ctx = _context(case.version)
    body = spec.model.parse(case.payload, ctx.version)
    reply = await spec.handler(d, ctx, str(volume.id), body)  # type: ignore[arg-type]
    return reply.status, set(d.policy.asked)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.key}@{c.version}" for c in CASES])
async def test_the_handler_answers_the_rows_status_and_asks_only_its_rules(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ACTION_TABLE[case.key]
    status, asked = await _run(case, tmp_path, monkeypatch)
    assert status == spec.status
    assert asked, "no policy rule asked"
    assert asked <= set(spec.rules), asked - set(spec.rules)


def test_every_row_has_cases() -> None:
    assert {case.key for case in CASES} == set(ACTION_TABLE)


@pytest.mark.parametrize("key", list(ACTION_TABLE))
async def test_the_rows_rules_are_all_asked_in_its_cases(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: set[str] = set()
    for case in (c for c in CASES if c.key == key):
        asked |= (await _run(case, tmp_path, monkeypatch))[1]
    assert asked == set(ACTION_TABLE[key].rules)
