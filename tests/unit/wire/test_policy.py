"""Policy: Cinder's rule names and defaults (spec §1.7, §3; ecosystem §6), policy.yaml overrides."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import yaml

from cinderblock.wire.policy import (
    DEFAULT_RULES,
    Credentials,
    Enforcer,
    PolicyConfigError,
    PolicyError,
    UnknownRuleError,
    expand_roles,
    generate_sample,
)

OWNER = "p-owner"
TARGET = {"project_id": OWNER}

ADMIN = Credentials("u-admin", "p-admin", frozenset({"admin"}), is_admin=True)
MEMBER = Credentials("u-member", OWNER, frozenset({"member"}), is_admin=False)
READER = Credentials("u-reader", OWNER, frozenset({"reader"}), is_admin=False)
OTHER = Credentials("u-other", "p-other", frozenset({"member"}), is_admin=False)
# An elevated/internal context: is_admin without any role.
IS_ADMIN = Credentials("u-svc", "p-svc", frozenset(), is_admin=True)
PERSONAS = {
    "admin": ADMIN,
    "member": MEMBER,
    "reader": READER,
    "other": OTHER,
    "is_admin": IS_ADMIN,
}

ADMIN_API = "rule:admin_api"
MEMBER_RULE = "rule:xena_system_admin_or_project_member"
READER_RULE = "rule:xena_system_admin_or_project_reader"

# Who passes each kind of default, in PERSONAS order.
ALLOWED = {
    ADMIN_API: {"admin", "is_admin"},
    MEMBER_RULE: {"admin", "member"},
    READER_RULE: {"admin", "member", "reader"},
}

# Rule name -> Cinder's default check string (cinder/policies/*.py; spec §1.7, §3, §5).
EXPECTED: dict[str, str] = {
    # base rules
    "admin_or_owner": (
        "is_admin:True or (role:admin and is_admin_project:True) or project_id:%(project_id)s"
    ),
    "context_is_admin": "role:admin",
    "admin_api": "is_admin:True or (role:admin and is_admin_project:True)",
    "xena_system_admin_or_project_reader": (
        "(role:admin) or (role:reader and project_id:%(project_id)s)"
    ),
    "xena_system_admin_or_project_member": (
        "(role:admin) or (role:member and project_id:%(project_id)s)"
    ),
    # volumes
    "volume:create": MEMBER_RULE,
    "volume:create_from_image": MEMBER_RULE,
    "volume:get": READER_RULE,
    "volume:get_all": READER_RULE,
    "volume:update": MEMBER_RULE,
    "volume:delete": MEMBER_RULE,
    "volume:force_delete": ADMIN_API,
    "volume:multiattach": MEMBER_RULE,
    "volume_extension:volume_host_attribute": ADMIN_API,
    "volume_extension:volume_mig_status_attribute": ADMIN_API,
    "volume_extension:volume_tenant_attribute": READER_RULE,
    "volume_extension:volume_encryption_metadata": READER_RULE,
    # the volume actions (§3 quick reference)
    "volume:extend": MEMBER_RULE,
    "volume:extend_attached_volume": MEMBER_RULE,
    "volume_extension:volume_admin_actions:extend_volume_completion": ADMIN_API,
    "volume:revert_to_snapshot": MEMBER_RULE,
    "volume_extension:volume_admin_actions:reset_status": ADMIN_API,
    "volume:retype": MEMBER_RULE,
    "volume:update_readonly_flag": MEMBER_RULE,
    "volume_extension:volume_admin_actions:force_delete": ADMIN_API,
    "volume_extension:snapshot_admin_actions:reset_status": ADMIN_API,
    "volume_extension:snapshot_admin_actions:force_delete": ADMIN_API,
    "volume_extension:volume_admin_actions:force_detach": ADMIN_API,
    "volume_extension:volume_admin_actions:migrate_volume": ADMIN_API,
    "volume_extension:volume_admin_actions:migrate_volume_completion": ADMIN_API,
    "volume_extension:volume_actions:upload_image": MEMBER_RULE,
    "volume_extension:volume_actions:upload_public": ADMIN_API,
    "volume_extension:volume_actions:attach": MEMBER_RULE,
    "volume_extension:volume_actions:detach": MEMBER_RULE,
    "volume_extension:volume_actions:reserve": MEMBER_RULE,
    "volume_extension:volume_actions:unreserve": MEMBER_RULE,
    "volume_extension:volume_actions:begin_detaching": MEMBER_RULE,
    "volume_extension:volume_actions:roll_detaching": MEMBER_RULE,
    "volume_extension:volume_actions:initialize_connection": MEMBER_RULE,
    "volume_extension:volume_actions:terminate_connection": MEMBER_RULE,
    "volume_extension:volume_unmanage": ADMIN_API,
    "volume:reimage": MEMBER_RULE,
    "volume:reimage_reserved": MEMBER_RULE,
    # volume and image metadata
    "volume:get_volume_metadata": READER_RULE,
    "volume:create_volume_metadata": MEMBER_RULE,
    "volume:update_volume_metadata": MEMBER_RULE,
    "volume:delete_volume_metadata": MEMBER_RULE,
    "volume:update_volume_admin_metadata": ADMIN_API,
    "volume_extension:volume_image_metadata:show": READER_RULE,
    "volume_extension:volume_image_metadata:set": MEMBER_RULE,
    "volume_extension:volume_image_metadata:remove": MEMBER_RULE,
    # snapshots
    "volume:create_snapshot": MEMBER_RULE,
    "volume:get_snapshot": READER_RULE,
    "volume:get_all_snapshots": READER_RULE,
    "volume:update_snapshot": MEMBER_RULE,
    "volume:delete_snapshot": MEMBER_RULE,
    "volume:get_snapshot_metadata": READER_RULE,
    "volume:update_snapshot_metadata": MEMBER_RULE,
    "volume:delete_snapshot_metadata": MEMBER_RULE,
    "volume_extension:extended_snapshot_attributes": READER_RULE,
    # volume types
    "volume_extension:type_create": ADMIN_API,
    "volume_extension:type_update": ADMIN_API,
    "volume_extension:type_delete": ADMIN_API,
    "volume_extension:type_get": READER_RULE,
    "volume_extension:type_get_all": READER_RULE,
    "volume_extension:access_types_extra_specs": READER_RULE,
    "volume_extension:access_types_qos_specs_id": ADMIN_API,
    "volume_extension:volume_type_access": MEMBER_RULE,
    "volume_extension:volume_type_access:addProjectAccess": ADMIN_API,
    "volume_extension:volume_type_access:removeProjectAccess": ADMIN_API,
    "volume_extension:types_extra_specs:index": READER_RULE,
    "volume_extension:types_extra_specs:show": READER_RULE,
    "volume_extension:types_extra_specs:create": ADMIN_API,
    "volume_extension:types_extra_specs:update": ADMIN_API,
    "volume_extension:types_extra_specs:delete": ADMIN_API,
    "volume_extension:types_extra_specs:read_sensitive": ADMIN_API,
    "volume_extension:volume_type_encryption": ADMIN_API,
    "volume_extension:volume_type_encryption:create": ADMIN_API,
    "volume_extension:volume_type_encryption:get": ADMIN_API,
    "volume_extension:volume_type_encryption:update": ADMIN_API,
    "volume_extension:volume_type_encryption:delete": ADMIN_API,
    # attachments
    "volume:attachment_create": MEMBER_RULE,
    "volume:attachment_update": MEMBER_RULE,
    "volume:attachment_delete": MEMBER_RULE,
    "volume:attachment_complete": MEMBER_RULE,
    "volume:multiattach_bootable_volume": MEMBER_RULE,
    # quotas, limits, pools, services
    "volume_extension:quotas:show": READER_RULE,
    "volume_extension:quotas:update": ADMIN_API,
    "volume_extension:quotas:delete": ADMIN_API,
    "limits_extension:used_limits": READER_RULE,
    "scheduler_extension:scheduler_stats:get_pools": ADMIN_API,
    "volume_extension:services:index": ADMIN_API,
    # user messages (cinder/policies/messages.py)
    "message:get_all": READER_RULE,
    "message:get": READER_RULE,
    "message:delete": MEMBER_RULE,
}

# The base rules themselves, by persona.
BASE_ALLOWED = {
    "admin_or_owner": {"admin", "member", "reader", "is_admin"},
    "context_is_admin": {"admin"},
    "admin_api": ALLOWED[ADMIN_API],
    "xena_system_admin_or_project_reader": ALLOWED[READER_RULE],
    "xena_system_admin_or_project_member": ALLOWED[MEMBER_RULE],
}


def allowed_personas(enforcer: Enforcer, rule: str, target: dict[str, str] = TARGET) -> set[str]:
    return {name for name, creds in PERSONAS.items() if enforcer.allowed(rule, creds, target)}


@pytest.fixture(scope="module")
def enforcer() -> Enforcer:
    return Enforcer()


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults -------------------------------------------------------------------------------


def test_every_registered_rule_is_covered_here() -> None:
    assert set(DEFAULT_RULES) == set(EXPECTED)


@pytest.mark.parametrize(("rule", "check_str"), sorted(EXPECTED.items()))
def test_default_check_string_is_cinders(rule: str, check_str: str) -> None:
    assert DEFAULT_RULES[rule] == check_str


@pytest.mark.parametrize("rule", sorted(r for r in EXPECTED if EXPECTED[r] in ALLOWED))
def test_default_against_personas(enforcer: Enforcer, rule: str) -> None:
    assert allowed_personas(enforcer, rule) == ALLOWED[EXPECTED[rule]]


@pytest.mark.parametrize(("rule", "personas"), sorted(BASE_ALLOWED.items()))
def test_base_rules_against_personas(enforcer: Enforcer, rule: str, personas: set[str]) -> None:
    assert allowed_personas(enforcer, rule) == personas


def test_admin_outside_the_admin_project_is_no_admin_api(enforcer: Enforcer) -> None:
    creds = Credentials("u", "p", frozenset({"admin"}), is_admin=False, is_admin_project=False)
    assert not enforcer.allowed("volume:force_delete", creds, TARGET)
    assert enforcer.allowed("volume:extend", creds, TARGET)  # role:admin alone passes member


def test_implied_roles() -> None:
    assert expand_roles(frozenset({"admin"})) == {"admin", "member", "reader"}
    assert expand_roles(frozenset({"member"})) == {"member", "reader"}
    assert expand_roles(frozenset({"reader", "observer"})) == {"reader", "observer"}
    assert expand_roles(frozenset({"Member"})) == {"member", "reader"}


def test_authorize_raises_cinders_403_message(enforcer: Enforcer) -> None:
    enforcer.authorize("volume:extend", MEMBER, TARGET)
    with pytest.raises(PolicyError) as caught:
        enforcer.authorize("volume:extend", OTHER, TARGET)
    assert caught.value.rule == "volume:extend"
    assert str(caught.value) == "Policy doesn't allow volume:extend to be performed."


def test_unregistered_rule_is_a_bug_not_a_denial(enforcer: Enforcer) -> None:
    with pytest.raises(UnknownRuleError, match="volume:extnd"):
        enforcer.allowed("volume:extnd", ADMIN, TARGET)


def test_target_without_project_denies_project_rules(enforcer: Enforcer) -> None:
    assert not enforcer.allowed("volume:get", READER, {})
    assert enforcer.allowed("volume:get", ADMIN, {})


def test_unhashable_target_values_still_decide(enforcer: Enforcer) -> None:
    target = {"project_id": OWNER, "tags": ["a"]}
    assert enforcer.allowed("volume:get", READER, target)  # type: ignore[arg-type]


def test_decisions_follow_the_credentials_not_a_cache(enforcer: Enforcer) -> None:
    for _ in range(3):
        assert enforcer.allowed("volume:update", MEMBER, TARGET)
        assert not enforcer.allowed("volume:update", READER, TARGET)
        assert not enforcer.allowed("volume:update", MEMBER, {"project_id": "elsewhere"})


def test_reads_no_command_line_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["cinderblock-api", "--config-file", "/nonexistent.conf"])
    monkeypatch.setenv("OS_OSLO_POLICY__ENFORCE_NEW_DEFAULTS", "false")
    monkeypatch.setenv("OS_OSLO_POLICY__POLICY_FILE", "/nonexistent/policy.yaml")
    assert allowed_personas(Enforcer(), "volume:extend") == ALLOWED[MEMBER_RULE]


# --- overrides ------------------------------------------------------------------------------


def test_policy_file_makes_extend_admin_only(tmp_path: Path) -> None:
    enforcer = Enforcer(policy_file=write(tmp_path, '"volume:extend": "rule:admin_api"\n'))
    assert allowed_personas(enforcer, "volume:extend") == {"admin", "is_admin"}
    assert allowed_personas(enforcer, "volume:extend_attached_volume") == ALLOWED[MEMBER_RULE]


def test_policy_file_forbids_with_bang(tmp_path: Path) -> None:
    path = write(tmp_path, '# disable online extend\n"volume:extend_attached_volume": "!"\n')
    enforcer = Enforcer(policy_file=path)
    assert allowed_personas(enforcer, "volume:extend_attached_volume") == set()
    with pytest.raises(PolicyError, match="volume:extend_attached_volume"):
        enforcer.authorize("volume:extend_attached_volume", ADMIN, TARGET)


def test_policy_file_allows_everyone_with_at_or_empty(tmp_path: Path) -> None:
    enforcer = Enforcer(
        policy_file=write(tmp_path, '"volume:get": "@"\n"volume:get_all": ""\n'),
    )
    assert allowed_personas(enforcer, "volume:get") == set(PERSONAS)
    assert allowed_personas(enforcer, "volume:get_all") == set(PERSONAS)


def test_policy_file_defines_and_references_its_own_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '"storage_operator": "role:storage-operator"\n'
        '"volume_extension:volume_admin_actions:reset_status": '
        '"rule:admin_api or rule:storage_operator"\n',
    )
    enforcer = Enforcer(policy_file=path)
    operator = Credentials("u-op", "p-ops", frozenset({"storage-operator"}), is_admin=False)
    rule = "volume_extension:volume_admin_actions:reset_status"
    assert enforcer.allowed(rule, operator, TARGET)
    assert allowed_personas(enforcer, rule) == {"admin", "is_admin"}
    assert not enforcer.allowed("volume:force_delete", operator, TARGET)


def test_overriding_a_base_rule_changes_every_rule_that_refers_to_it(tmp_path: Path) -> None:
    path = write(tmp_path, '"xena_system_admin_or_project_member": "rule:admin_api"\n')
    enforcer = Enforcer(policy_file=path)
    for rule in ("volume:extend", "volume:update", "volume_extension:volume_actions:attach"):
        assert allowed_personas(enforcer, rule) == {"admin", "is_admin"}
    assert allowed_personas(enforcer, "volume:get") == ALLOWED[READER_RULE]


def test_rule_reference_to_admin_api_in_code_overrides() -> None:
    enforcer = Enforcer(rules={"volume:retype": "rule:admin_api"})
    assert allowed_personas(enforcer, "volume:retype") == {"admin", "is_admin"}
    assert DEFAULT_RULES["volume:retype"] == MEMBER_RULE


def test_policy_file_has_the_last_word_over_code_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, '"volume:retype": "role:reader and project_id:%(project_id)s"\n')
    enforcer = Enforcer(rules={"volume:retype": "!"}, policy_file=path)
    assert allowed_personas(enforcer, "volume:retype") == {"member", "reader"}


def test_user_id_substitution(tmp_path: Path) -> None:
    path = write(tmp_path, '"volume:delete": "user_id:%(user_id)s"\n')
    enforcer = Enforcer(policy_file=path)
    assert enforcer.allowed("volume:delete", MEMBER, {"project_id": OWNER, "user_id": "u-member"})
    assert not enforcer.allowed("volume:delete", MEMBER, {"project_id": OWNER, "user_id": "x"})


def test_json_policy_file_is_read_too(tmp_path: Path) -> None:
    path = write(tmp_path, '{"volume:extend": "rule:admin_api"}', name="policy.json")
    assert allowed_personas(Enforcer(policy_file=path), "volume:extend") == {"admin", "is_admin"}


def test_empty_policy_file_keeps_the_defaults(tmp_path: Path) -> None:
    enforcer = Enforcer(policy_file=write(tmp_path, "# nothing changed\n"))
    assert allowed_personas(enforcer, "volume:extend") == ALLOWED[MEMBER_RULE]


def test_old_rule_name_still_overrides_its_successors_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, '"volume_extension:volume_image_metadata": "rule:admin_api"\n')
    with pytest.warns(UserWarning, match="volume_extension:volume_image_metadata"):
        enforcer = Enforcer(policy_file=path)
    for verb in ("show", "set", "remove"):
        rule = f"volume_extension:volume_image_metadata:{verb}"
        assert allowed_personas(enforcer, rule) == {"admin", "is_admin"}


def test_the_file_is_read_once_at_startup(tmp_path: Path) -> None:
    path = write(tmp_path, '"volume:extend": "rule:admin_api"\n')
    enforcer = Enforcer(policy_file=path)
    path.write_text('"volume:extend": "@"\n', encoding="utf-8")
    assert not enforcer.allowed("volume:extend", OTHER, TARGET)


# --- errors ---------------------------------------------------------------------------------


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyConfigError, match="does not exist"):
        Enforcer(policy_file=tmp_path / "absent.yaml")


def test_policy_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(PolicyConfigError, match="cannot be read"):
        Enforcer(policy_file=tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"volume:extend": "rule:admin_api\n', "not valid YAML"),
        ("- volume:extend\n", "must map rule names to check strings, not be a list"),
        ('"volume:extend": !\n', "quote it"),
        ('"volume:extend":\n', "has no check string"),
        ('"volume:extend": ["role:admin"]\n', "must be a quoted check string"),
        ('"volume:extend": 1\n', "must be a quoted check string"),
        ('"volume:extend": "role:admin or"\n', "cannot parse"),
        ('"volume:extend": "(role:admin"\n', "cannot parse"),
        ('"volume:extend": "admin"\n', "cannot parse"),
        ('"volume:extend": "project_id:%(project_id"\n', "bad %"),
        ('"volume:extend": "rule:storage_operator"\n', "rule:storage_operator, which is not"),
        ('"a": "rule:b"\n"b": "rule:a"\n', "cycle"),
    ],
)
def test_malformed_policy_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyConfigError, match=message) as caught:
        Enforcer(policy_file=path)
    assert str(path) in str(caught.value)


def test_malformed_code_override() -> None:
    with pytest.raises(PolicyConfigError, match="rules: rule 'volume:extend': cannot parse"):
        Enforcer(rules={"volume:extend": "role:admin and and role:member"})


# --- sample ---------------------------------------------------------------------------------


def test_sample_lists_every_default_commented_out() -> None:
    sample = generate_sample()
    assert yaml.safe_load(sample) is None
    for rule, check_str in DEFAULT_RULES.items():
        assert f'#"{rule}": "{check_str}"\n' in sample


def test_sample_uncommented_is_a_policy_file_equal_to_the_defaults(tmp_path: Path) -> None:
    lines = [line[1:] for line in generate_sample().splitlines() if line.startswith('#"')]
    assert yaml.safe_load("\n".join(lines)) == dict(DEFAULT_RULES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enforcer = Enforcer(policy_file=write(tmp_path, "\n".join(lines)))
    assert allowed_personas(enforcer, "volume:extend") == ALLOWED[MEMBER_RULE]
