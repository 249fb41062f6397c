"""The authorization matrix's requests and callers (tests/e2e/test_authorization_matrix.py):
what each route and volume action is sent, which policy rule decides it, and who asks.

A case names its policy rule; an action case takes it from the action table: a row's
first rule is the one its handler checks on every request, the others only for some
volumes or bodies (an attached volume, a multiattach type, a public upload, a reserved
volume), which these requests avoid. Expectations come from evaluating that rule with
the caller's credentials on the policy enforcer the service itself uses.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from cinderblock.api.action_table import ACTION_TABLE
from cinderblock.wire.policy import Credentials, Enforcer
from tests.helpers.apiref import SAMPLES

# Microversion of every request: the newest, so every route and action is served (revert
# 3.40, attachments 3.27 / os-complete 3.44, reimage 3.68, project-less URLs 3.67).
VERSION = "3.71"

# Spec volume-actions.md §1.6: the fault name for each status.
FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    501: "notImplemented",
    503: "serviceUnavailable",
}

# Ids Cinder's api-ref samples name, swapped for the case's own resources.
_SAMPLE_IDS = {
    "d8777f54-84cf-4809-a679-468ffed56cf1": "{attachment}",
    "2b955850-f177-45f7-9f49-ecb2c256d161": "{other_volume}",
    "5aa119a8-d25b-45a7-8d1b-88e127885635": "{snapshot}",
    "71543ced-a8af-45b6-a5c4-a46282108a90": "{image}",
    '"dedup-tier-replicaton"': '"{type}"',
}
# Samples with the same action key: the one Cinder answers 202 (host-attach has no mountpoint).
_SKIPPED_SAMPLES = frozenset({"host-attach-request.json"})


def action_samples() -> dict[str, str]:
    """Every api-ref volume-action request sample, by action key, as templated text."""
    found: dict[str, str] = {}
    for path in sorted([*SAMPLES.glob("*-request.json"), *SAMPLES.glob("volume_actions/*.json")]):
        if path.name in _SKIPPED_SAMPLES:
            continue
        text = path.read_text()
        body = json.loads(text)
        if not (isinstance(body, dict) and len(body) == 1):
            continue
        (key,) = body
        if key in ACTION_TABLE and key not in found:
            text = text.replace("{", "{{").replace("}", "}}")
            for theirs, ours in _SAMPLE_IDS.items():
                text = text.replace(theirs, ours)
            found[key] = text
    return found


@dataclass(frozen=True)
class Case:
    """One request. ``path`` and ``body`` are ``str.format`` templates over the names of the
    owner's resources (``{volume}``, ``{snapshot}``, ``{type}``, ...); ``needs`` lists them.

    rule: the policy rule that decides it (None: no rule, any caller of the project reads).
    owned: it names a resource of the owning project (another project gets 404).
    target: whose project the rule's ``project_id`` is: the owner's or the caller's.
    listed: a listing in which another project's resources must not appear.
    action: the volume action's key (an action case).
    """

    name: str
    method: str
    path: str
    body: str | None = None
    rule: str | None = None
    owned: bool = True
    target: str = "owner"
    listed: bool = False
    action: str | None = None

    @property
    def needs(self) -> frozenset[str]:
        return frozenset(re.findall(r"(?<!\{)\{(\w+)\}", self.path + (self.body or "")))

    def render(self, values: dict[str, str]) -> tuple[str, Any]:
        path = self.path.format(**values)
        body = None if self.body is None else json.loads(self.body.format(**values))
        return path, body


def _j(value: Any) -> str:
    """A body template: JSON with {placeholders} kept and literal braces escaped."""
    text = json.dumps(value).replace("{", "{{").replace("}", "}}")
    return re.sub(r'"@(\w+)@"', r'"{\1}"', text)


def route_cases() -> list[Case]:
    vol, snap, att, typ = (
        "/volumes/{volume}",
        "/snapshots/{snapshot}",
        "/attachments/{attachment}",
        "/types/{type}",
    )
    meta = {"metadata": {"a": "b"}}
    return [
        Case(
            "GET volumes",
            "GET",
            "/volumes",
            rule="volume:get_all",
            owned=False,
            target="caller",
            listed=True,
        ),
        Case(
            "GET volumes/detail",
            "GET",
            "/volumes/detail",
            rule="volume:get_all",
            owned=False,
            target="caller",
            listed=True,
        ),
        Case(
            "POST volumes",
            "POST",
            "/volumes",
            _j({"volume": {"size": 1}}),
            "volume:create",
            owned=False,
            target="caller",
        ),
        Case("GET volume", "GET", vol, rule="volume:get"),
        Case("PUT volume", "PUT", vol, _j({"volume": {"name": "renamed"}}), "volume:update"),
        Case("DELETE volume", "DELETE", vol, rule="volume:delete"),
        Case(
            "GET volume encryption",
            "GET",
            f"{vol}/encryption",
            rule="volume_extension:volume_encryption_metadata",
        ),
        Case(
            "GET volume encryption key",
            "GET",
            f"{vol}/encryption/encryption_key_id",
            rule="volume_extension:volume_encryption_metadata",
        ),
        Case("GET volume metadata", "GET", f"{vol}/metadata", rule="volume:get_volume_metadata"),
        Case(
            "POST volume metadata",
            "POST",
            f"{vol}/metadata",
            _j(meta),
            "volume:create_volume_metadata",
        ),
        Case(
            "PUT volume metadata",
            "PUT",
            f"{vol}/metadata",
            _j(meta),
            "volume:update_volume_metadata",
        ),
        Case(
            "GET volume metadata key", "GET", f"{vol}/metadata/k", rule="volume:get_volume_metadata"
        ),
        Case(
            "PUT volume metadata key",
            "PUT",
            f"{vol}/metadata/k",
            _j({"meta": {"k": "w"}}),
            "volume:update_volume_metadata",
        ),
        Case(
            "DELETE volume metadata key",
            "DELETE",
            f"{vol}/metadata/k",
            rule="volume:delete_volume_metadata",
        ),
        Case(
            "GET snapshots",
            "GET",
            "/snapshots",
            rule="volume:get_all_snapshots",
            owned=False,
            target="caller",
            listed=True,
        ),
        Case(
            "GET snapshots/detail",
            "GET",
            "/snapshots/detail",
            rule="volume:get_all_snapshots",
            owned=False,
            target="caller",
            listed=True,
        ),
        Case(
            "POST snapshots",
            "POST",
            "/snapshots",
            _j({"snapshot": {"volume_id": "@volume@"}}),
            "volume:create_snapshot",
        ),
        Case("GET snapshot", "GET", snap, rule="volume:get_snapshot"),
        Case(
            "PUT snapshot",
            "PUT",
            snap,
            _j({"snapshot": {"name": "renamed"}}),
            "volume:update_snapshot",
        ),
        Case("DELETE snapshot", "DELETE", snap, rule="volume:delete_snapshot"),
        Case(
            "snapshot action os-reset_status",
            "POST",
            f"{snap}/action",
            _j({"os-reset_status": {"status": "available"}}),
            "volume_extension:snapshot_admin_actions:reset_status",
        ),
        Case(
            "snapshot action os-force_delete",
            "POST",
            f"{snap}/action",
            _j({"os-force_delete": {}}),
            "volume_extension:snapshot_admin_actions:force_delete",
        ),
        Case(
            "GET snapshot metadata", "GET", f"{snap}/metadata", rule="volume:get_snapshot_metadata"
        ),
        Case(
            "POST snapshot metadata",
            "POST",
            f"{snap}/metadata",
            _j(meta),
            "volume:update_snapshot_metadata",
        ),
        Case(
            "PUT snapshot metadata",
            "PUT",
            f"{snap}/metadata",
            _j(meta),
            "volume:update_snapshot_metadata",
        ),
        Case(
            "GET snapshot metadata key",
            "GET",
            f"{snap}/metadata/k",
            rule="volume:get_snapshot_metadata",
        ),
        Case(
            "PUT snapshot metadata key",
            "PUT",
            f"{snap}/metadata/k",
            _j({"meta": {"k": "w"}}),
            "volume:update_snapshot_metadata",
        ),
        Case(
            "DELETE snapshot metadata key",
            "DELETE",
            f"{snap}/metadata/k",
            rule="volume:delete_snapshot_metadata",
        ),
        Case(
            "POST attachments",
            "POST",
            "/attachments",
            _j({"attachment": {"volume_uuid": "@volume@", "instance_uuid": "@instance@"}}),
            "volume:attachment_create",
        ),
        # Cinder registers no rule for reading attachments: the lookup is project scoped.
        Case("GET attachments", "GET", "/attachments", owned=False, target="caller", listed=True),
        Case(
            "GET attachments/detail",
            "GET",
            "/attachments/detail",
            owned=False,
            target="caller",
            listed=True,
        ),
        Case("GET attachment", "GET", att),
        Case(
            "PUT attachment",
            "PUT",
            att,
            _j(
                {
                    "attachment": {
                        "connector": {
                            "initiator": "iqn.1993-08.org.debian:01:cad181614cec",
                            "host": "tempest-1",
                            "mountpoint": "/dev/vdb",
                            "mode": "rw",
                        }
                    }
                }
            ),
            "volume:attachment_update",
        ),
        Case("DELETE attachment", "DELETE", att, rule="volume:attachment_delete"),
        Case(
            "attachment action os-complete",
            "POST",
            f"{att}/action",
            _j({"os-complete": {}}),
            "volume:attachment_complete",
        ),
        Case(
            "GET types",
            "GET",
            "/types",
            rule="volume_extension:type_get_all",
            owned=False,
            target="caller",
        ),
        Case(
            "POST types",
            "POST",
            "/types",
            _j({"volume_type": {"name": "@unique@"}}),
            "volume_extension:type_create",
            owned=False,
            target="caller",
        ),
        Case(
            "GET type", "GET", typ, rule="volume_extension:type_get", owned=False, target="caller"
        ),
        Case(
            "PUT type",
            "PUT",
            typ,
            _j({"volume_type": {"description": "changed"}}),
            "volume_extension:type_update",
            owned=False,
            target="caller",
        ),
        Case(
            "DELETE type",
            "DELETE",
            typ,
            rule="volume_extension:type_delete",
            owned=False,
            target="caller",
        ),
        Case(
            "type action addProjectAccess",
            "POST",
            f"{typ}/action",
            _j({"addProjectAccess": {"project": "@unique@"}}),
            "volume_extension:volume_type_access:addProjectAccess",
            owned=False,
            target="caller",
        ),
        Case(
            "GET type extra_specs",
            "GET",
            f"{typ}/extra_specs",
            rule="volume_extension:types_extra_specs:index",
            owned=False,
            target="caller",
        ),
        Case(
            "POST type extra_specs",
            "POST",
            f"{typ}/extra_specs",
            _j({"extra_specs": {"x": "y"}}),
            "volume_extension:types_extra_specs:create",
            owned=False,
            target="caller",
        ),
        Case(
            "GET type extra_spec",
            "GET",
            f"{typ}/extra_specs/k",
            rule="volume_extension:types_extra_specs:show",
            owned=False,
            target="caller",
        ),
        Case(
            "DELETE type extra_spec",
            "DELETE",
            f"{typ}/extra_specs/k",
            rule="volume_extension:types_extra_specs:delete",
            owned=False,
            target="caller",
        ),
        Case(
            "GET type encryption",
            "GET",
            f"{typ}/encryption",
            rule="volume_extension:volume_type_encryption:get",
            owned=False,
            target="caller",
        ),
        Case(
            "POST type encryption",
            "POST",
            f"{typ}/encryption",
            _j(
                {
                    "encryption": {
                        "provider": "luks",
                        "control_location": "front-end",
                        "cipher": "aes-xts-plain64",
                        "key_size": 256,
                    }
                }
            ),
            "volume_extension:volume_type_encryption:create",
            owned=False,
            target="caller",
        ),
        Case(
            "GET type encryption key",
            "GET",
            f"{typ}/encryption/cipher",
            rule="volume_extension:volume_type_encryption:get",
            owned=False,
            target="caller",
        ),
        Case(
            "PUT type encryption",
            "PUT",
            f"{typ}/encryption/{{encryption}}",
            _j({"encryption": {"key_size": 512}}),
            "volume_extension:volume_type_encryption:update",
            owned=False,
            target="caller",
        ),
        Case(
            "DELETE type encryption",
            "DELETE",
            f"{typ}/encryption/{{encryption}}",
            rule="volume_extension:volume_type_encryption:delete",
            owned=False,
            target="caller",
        ),
        # Quotas are not hidden: another project's are 403 (the rule's target is the owner).
        Case(
            "GET quota defaults",
            "GET",
            "/os-quota-sets/{owner}/defaults",
            rule="volume_extension:quotas:show",
            owned=False,
        ),
        Case(
            "GET quotas",
            "GET",
            "/os-quota-sets/{owner}",
            rule="volume_extension:quotas:show",
            owned=False,
        ),
        Case(
            "PUT quotas",
            "PUT",
            "/os-quota-sets/{owner}",
            _j({"quota_set": {"volumes": 20}}),
            "volume_extension:quotas:update",
            owned=False,
        ),
        Case(
            "DELETE quotas",
            "DELETE",
            "/os-quota-sets/{owner}",
            rule="volume_extension:quotas:delete",
            owned=False,
        ),
        Case(
            "GET limits",
            "GET",
            "/limits",
            rule="limits_extension:used_limits",
            owned=False,
            target="caller",
        ),
        Case(
            "GET pools",
            "GET",
            "/scheduler-stats/get_pools",
            rule="scheduler_extension:scheduler_stats:get_pools",
            owned=False,
            target="caller",
        ),
        Case(
            "GET os-services",
            "GET",
            "/os-services",
            rule="volume_extension:services:index",
            owned=False,
            target="caller",
        ),
        Case(
            "GET usage",
            "GET",
            "/os-usage",
            rule="volume_extension:quotas:show",
            owned=False,
            target="caller",
        ),
        Case(
            "GET usage of a project",
            "GET",
            "/os-usage/{owner}",
            rule="volume_extension:quotas:show",
            owned=False,
        ),
        Case(
            "GET messages",
            "GET",
            "/messages",
            rule="message:get_all",
            owned=False,
            target="caller",
            listed=True,
        ),
        Case("GET message", "GET", "/messages/{message}", rule="message:get"),
        Case("DELETE message", "DELETE", "/messages/{message}", rule="message:delete"),
    ]


def action_cases() -> list[Case]:
    samples = action_samples()
    missing = set(ACTION_TABLE) - set(samples)
    assert not missing, f"actions without an api-ref request sample: {sorted(missing)}"
    cases = [
        Case(
            f"action {key}",
            "POST",
            "/volumes/{volume}/action",
            samples[key],
            spec.rules[0],
            action=key,
        )
        for key, spec in ACTION_TABLE.items()
    ]
    # The retype sample as it is: its type does not exist (spec §3.11 step 2: the policy
    # refuses before the type is looked up).
    unknown = samples["os-retype"].replace('"{type}"', '"dedup-tier-replicaton"')
    retype = ACTION_TABLE["os-retype"].rules[0]
    path = "/volumes/{volume}/action"
    cases.append(
        Case("action os-retype, unknown type", "POST", path, unknown, retype, action="os-retype")
    )
    return cases


@dataclass(frozen=True)
class Caller:
    """Who asks. ``roles`` None: no identity (no token). ``keystone``: through the API in
    keystone mode. ``own``: gets resources of its own for each case (it may change them).
    ``url``: the project in the URL: the caller's (``own``), none (3.67's project-less
    form), or the owner's while the token names another project (``owner``)."""

    kind: str
    roles: frozenset[str] | None
    own: bool = False
    stranger: bool = False
    keystone: bool = False
    service_token: bool = False
    url: str = "own"


MEMBER = frozenset({"member"})
CALLERS = (
    Caller("admin", frozenset({"admin"}), own=True),
    Caller("member", MEMBER, own=True),
    Caller("reader", frozenset({"reader"})),
    Caller("other_project_member", MEMBER, stranger=True),
    Caller("other_project_member_projectless_url", MEMBER, stranger=True, url="none"),
    Caller("other_project_member_in_owner_url", MEMBER, stranger=True, url="owner"),
    Caller("no_token", None, url="owner"),
    Caller("no_token_keystone", None, keystone=True, url="owner"),
    # A user's member token with Nova's service token beside it (keystone mode).
    Caller(
        "service_token",
        frozenset({"member", "reader"}),
        own=True,
        keystone=True,
        service_token=True,
    ),
    # A service token alone, no user token (keystone mode).
    Caller("service_token_only", None, keystone=True, service_token=True, url="owner"),
)


_ENFORCER = Enforcer()


def policy_allows(case: Case, caller: Caller, user: str, project: str, owner: str) -> bool:
    if case.rule is None:
        return True
    assert caller.roles is not None
    creds = Credentials(user, project, caller.roles, "admin" in caller.roles)
    target = owner if case.target == "owner" else project
    return _ENFORCER.allowed(case.rule, creds, {"project_id": target})
