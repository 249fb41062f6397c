"""Policy in code: Cinder's rule names, default check strings and what each one guards.

Names and defaults are Cinder's (``cinder/policies/*.py``, Xena-style "secure RBAC" defaults that
are current upstream): the member and reader rules point at ``xena_system_admin_or_project_*``
and admin-only rules at ``admin_api``, so a deployer's policy.yaml written for Cinder means the
same here. Only the rules this service can enforce are registered (volumes, the volume actions,
volume and image metadata, snapshots, volume types, attachments, quotas, limits, pools,
services, user messages).

``list_rules`` follows oslo.policy's entry-point convention (``oslo.policy.policies``), so
``oslopolicy-sample-generator --namespace cinderblock`` works once the entry point is declared.
"""

from __future__ import annotations

from oslo_policy import policy

# Check strings of the base rules (cinder/policies/base.py).
ADMIN_API = "rule:admin_api"
MEMBER = "rule:xena_system_admin_or_project_member"
READER = "rule:xena_system_admin_or_project_reader"

_XENA = "X"
_RENAMED = "{old} has been replaced by finer-grained policies: {new}."


def _op(spec: str) -> policy.Operation:
    method, _, path = spec.partition(" ")
    return policy.Operation(method=method, path=path)


def _rule(
    name: str,
    check_str: str,
    description: str,
    *operations: str,
    deprecated: policy.DeprecatedRule | None = None,
) -> policy.DocumentedRuleDefault:
    return policy.DocumentedRuleDefault(
        name=name,
        check_str=check_str,
        description=description,
        operations=[_op(spec) for spec in operations],
        deprecated_rule=deprecated,
    )


def _action(name: str) -> str:
    return f"POST /volumes/{{volume_id}}/action ({name})"


def _renamed(old: str, check_str: str, new: str) -> policy.DeprecatedRule:
    """An old rule name whose override in a policy file still applies to ``new``."""
    return policy.DeprecatedRule(
        old,
        check_str,
        deprecated_reason=_RENAMED.format(old=old, new=new),
        deprecated_since=_XENA,
    )


_IMAGE_METADATA = "volume_extension:volume_image_metadata"
_TYPES_MANAGE = "volume_extension:types_manage"

BASE_RULES: tuple[policy.RuleDefault, ...] = (
    policy.RuleDefault(
        "admin_or_owner",
        "is_admin:True or (role:admin and is_admin_project:True) or project_id:%(project_id)s",
        description="Legacy (pre-Xena) rule for most non-admin APIs: any role in the owning "
        "project. No default uses it; kept because older policy files refer to it.",
    ),
    policy.RuleDefault(
        "context_is_admin",
        "role:admin",
        description="Decides what is required for the 'is_admin:True' check to succeed.",
    ),
    policy.RuleDefault(
        "admin_api",
        "is_admin:True or (role:admin and is_admin_project:True)",
        description="Default rule for most Admin APIs.",
    ),
    policy.RuleDefault(
        "xena_system_admin_or_project_reader",
        "(role:admin) or (role:reader and project_id:%(project_id)s)",
        description="NOTE: this purely role-based rule recognizes only project scope",
    ),
    policy.RuleDefault(
        "xena_system_admin_or_project_member",
        "(role:admin) or (role:member and project_id:%(project_id)s)",
        description="NOTE: this purely role-based rule recognizes only project scope",
    ),
)

VOLUME_RULES: tuple[policy.RuleDefault, ...] = (
    _rule("volume:create", MEMBER, "Create volume.", "POST /volumes"),
    _rule("volume:create_from_image", MEMBER, "Create volume from image.", "POST /volumes"),
    _rule("volume:get", READER, "Show volume.", "GET /volumes/{volume_id}"),
    _rule(
        "volume:get_all",
        READER,
        "List volumes or get summary of volumes.",
        "GET /volumes",
        "GET /volumes/detail",
        "GET /volumes/summary",
    ),
    _rule(
        "volume:update",
        MEMBER,
        "Update volume or update a volume's bootable status.",
        "PUT /volumes",
        _action("os-set_bootable"),
    ),
    _rule("volume:delete", MEMBER, "Delete volume.", "DELETE /volumes/{volume_id}"),
    _rule(
        "volume:force_delete", ADMIN_API, "Force Delete a volume.", "DELETE /volumes/{volume_id}"
    ),
    _rule(
        "volume_extension:volume_host_attribute",
        ADMIN_API,
        "List or show volume with host attribute.",
        "GET /volumes/{volume_id}",
        "GET /volumes/detail",
    ),
    _rule(
        "volume_extension:volume_tenant_attribute",
        READER,
        "List or show volume with tenant attribute.",
        "GET /volumes/{volume_id}",
        "GET /volumes/detail",
    ),
    _rule(
        "volume_extension:volume_mig_status_attribute",
        ADMIN_API,
        "List or show volume with migration status attribute.",
        "GET /volumes/{volume_id}",
        "GET /volumes/detail",
    ),
    _rule("volume:multiattach", MEMBER, "Create multiattach capable volume.", "POST /volumes"),
    _rule(
        "volume_extension:volume_encryption_metadata",
        READER,
        "Show volume's encryption metadata.",
        "GET /volumes/{volume_id}/encryption",
        "GET /volumes/{volume_id}/encryption/{encryption_key}",
    ),
)

VOLUME_ACTION_RULES: tuple[policy.RuleDefault, ...] = (
    _rule("volume:extend", MEMBER, "Extend a volume.", _action("os-extend")),
    _rule(
        "volume:extend_attached_volume",
        MEMBER,
        "Extend a attached volume.",
        _action("os-extend"),
    ),
    _rule(
        "volume_extension:volume_admin_actions:extend_volume_completion",
        ADMIN_API,
        "Complete a volume extend operation.",
        _action("os-extend_volume_completion"),
    ),
    _rule(
        "volume:revert_to_snapshot",
        MEMBER,
        "Revert a volume to a snapshot.",
        _action("revert"),
    ),
    _rule(
        "volume_extension:volume_admin_actions:reset_status",
        ADMIN_API,
        "Reset status of a volume.",
        _action("os-reset_status"),
    ),
    _rule("volume:retype", MEMBER, "Retype a volume.", _action("os-retype")),
    _rule(
        "volume:update_readonly_flag",
        MEMBER,
        "Update a volume's readonly flag.",
        _action("os-update_readonly_flag"),
    ),
    _rule(
        "volume_extension:volume_admin_actions:force_delete",
        ADMIN_API,
        "Force delete a volume.",
        _action("os-force_delete"),
    ),
    _rule(
        "volume_extension:volume_actions:upload_public",
        ADMIN_API,
        "Upload a volume to image with public visibility.",
        _action("os-volume_upload_image"),
    ),
    _rule(
        "volume_extension:volume_actions:upload_image",
        MEMBER,
        "Upload a volume to image.",
        _action("os-volume_upload_image"),
    ),
    _rule(
        "volume_extension:volume_admin_actions:force_detach",
        ADMIN_API,
        "Force detach a volume.",
        _action("os-force_detach"),
    ),
    _rule(
        "volume_extension:volume_admin_actions:migrate_volume",
        ADMIN_API,
        "migrate a volume to a specified host.",
        _action("os-migrate_volume"),
    ),
    _rule(
        "volume_extension:volume_admin_actions:migrate_volume_completion",
        ADMIN_API,
        "Complete a volume migration.",
        _action("os-migrate_volume_completion"),
    ),
    _rule(
        "volume_extension:volume_actions:initialize_connection",
        MEMBER,
        "Initialize volume attachment.",
        _action("os-initialize_connection"),
    ),
    _rule(
        "volume_extension:volume_actions:terminate_connection",
        MEMBER,
        "Terminate volume attachment.",
        _action("os-terminate_connection"),
    ),
    _rule(
        "volume_extension:volume_actions:roll_detaching",
        MEMBER,
        "Roll back volume status to 'in-use'.",
        _action("os-roll_detaching"),
    ),
    _rule(
        "volume_extension:volume_actions:reserve",
        MEMBER,
        "Mark volume as reserved.",
        _action("os-reserve"),
    ),
    _rule(
        "volume_extension:volume_actions:unreserve",
        MEMBER,
        "Unmark volume as reserved.",
        _action("os-unreserve"),
    ),
    _rule(
        "volume_extension:volume_actions:begin_detaching",
        MEMBER,
        "Begin detach volumes.",
        _action("os-begin_detaching"),
    ),
    _rule(
        "volume_extension:volume_actions:attach",
        MEMBER,
        "Add attachment metadata.",
        _action("os-attach"),
    ),
    _rule(
        "volume_extension:volume_actions:detach",
        MEMBER,
        "Clear attachment metadata.",
        _action("os-detach"),
    ),
    _rule(
        "volume:reimage",
        MEMBER,
        "Reimage a volume in 'available' or 'error' status.",
        _action("os-reimage"),
    ),
    _rule(
        "volume:reimage_reserved",
        MEMBER,
        "Reimage a volume in 'reserved' status.",
        _action("os-reimage"),
    ),
    _rule(
        "volume_extension:volume_unmanage",
        ADMIN_API,
        "Stop managing a volume.",
        _action("os-unmanage"),
    ),
)


_IMAGE_METADATA_ALIAS = _renamed(
    _IMAGE_METADATA,
    "rule:admin_or_owner",
    ", ".join(f"{_IMAGE_METADATA}:{verb}" for verb in ("show", "set", "remove")),
)


VOLUME_METADATA_RULES: tuple[policy.RuleDefault, ...] = (
    _rule(
        "volume:get_volume_metadata",
        READER,
        "Show volume's metadata or one specified metadata with a given key.",
        "GET /volumes/{volume_id}/metadata",
        "GET /volumes/{volume_id}/metadata/{key}",
        _action("os-show_image_metadata"),
    ),
    _rule(
        "volume:create_volume_metadata",
        MEMBER,
        "Create volume metadata.",
        "POST /volumes/{volume_id}/metadata",
    ),
    _rule(
        "volume:update_volume_metadata",
        MEMBER,
        "Replace a volume's metadata dictionary or update a single metadatum with a given key.",
        "PUT /volumes/{volume_id}/metadata",
        "PUT /volumes/{volume_id}/metadata/{key}",
        _action("os-set_image_metadata"),
    ),
    _rule(
        "volume:delete_volume_metadata",
        MEMBER,
        "Delete a volume's metadatum with the given key.",
        "DELETE /volumes/{volume_id}/metadata/{key}",
        _action("os-unset_image_metadata"),
    ),
    _rule(
        f"{_IMAGE_METADATA}:show",
        READER,
        "Include a volume's image metadata in volume detail responses. The ability to make "
        "these calls is governed by other policies.",
        "GET /volumes/detail",
        "GET /volumes/{volume_id}",
        deprecated=_IMAGE_METADATA_ALIAS,
    ),
    _rule(
        f"{_IMAGE_METADATA}:set",
        MEMBER,
        "Set image metadata for a volume",
        _action("os-set_image_metadata"),
        deprecated=_IMAGE_METADATA_ALIAS,
    ),
    _rule(
        f"{_IMAGE_METADATA}:remove",
        MEMBER,
        "Remove specific image metadata from a volume",
        _action("os-unset_image_metadata"),
        deprecated=_IMAGE_METADATA_ALIAS,
    ),
    _rule(
        "volume:update_volume_admin_metadata",
        ADMIN_API,
        "Update volume admin metadata. This permission is required to complete these API "
        "calls, though the ability to make these calls is governed by other policies.",
        _action("os-update_readonly_flag"),
        _action("os-attach"),
    ),
)

SNAPSHOT_RULES: tuple[policy.RuleDefault, ...] = (
    _rule("volume:create_snapshot", MEMBER, "Create snapshot.", "POST /snapshots"),
    _rule("volume:get_snapshot", READER, "Show snapshot.", "GET /snapshots/{snapshot_id}"),
    _rule(
        "volume:get_all_snapshots",
        READER,
        "List snapshots.",
        "GET /snapshots",
        "GET /snapshots/detail",
    ),
    _rule("volume:update_snapshot", MEMBER, "Update snapshot.", "PUT /snapshots/{snapshot_id}"),
    _rule(
        "volume_extension:snapshot_admin_actions:reset_status",
        ADMIN_API,
        "Reset status of a snapshot.",
        "POST /snapshots/{snapshot_id}/action (os-reset_status)",
    ),
    _rule(
        "volume_extension:snapshot_admin_actions:force_delete",
        ADMIN_API,
        "Force delete a snapshot.",
        "POST /snapshots/{snapshot_id}/action (os-force_delete)",
    ),
    _rule(
        "volume:delete_snapshot",
        MEMBER,
        "Delete snapshot.",
        "DELETE /snapshots/{snapshot_id}",
    ),
    _rule(
        "volume:get_snapshot_metadata",
        READER,
        "Show snapshot's metadata or one specified metadata with a given key.",
        "GET /snapshots/{snapshot_id}/metadata",
        "GET /snapshots/{snapshot_id}/metadata/{key}",
    ),
    _rule(
        "volume:update_snapshot_metadata",
        MEMBER,
        "Update snapshot's metadata or one specified metadata with a given key.",
        "POST /snapshots/{snapshot_id}/metadata",
        "PUT /snapshots/{snapshot_id}/metadata",
        "PUT /snapshots/{snapshot_id}/metadata/{key}",
    ),
    _rule(
        "volume:delete_snapshot_metadata",
        MEMBER,
        "Delete snapshot's specified metadata with a given key.",
        "DELETE /snapshots/{snapshot_id}/metadata/{key}",
    ),
    _rule(
        "volume_extension:extended_snapshot_attributes",
        READER,
        "List or show snapshots with extended attributes.",
        "GET /snapshots/{snapshot_id}",
        "GET /snapshots/detail",
    ),
)


_TYPES_MANAGE_ALIAS = _renamed(
    _TYPES_MANAGE,
    ADMIN_API,
    ", ".join(f"volume_extension:type_{verb}" for verb in ("create", "update", "delete")),
)


VOLUME_TYPE_RULES: tuple[policy.RuleDefault, ...] = (
    _rule(
        "volume_extension:type_create",
        ADMIN_API,
        "Create volume type.",
        "POST /types",
        deprecated=_TYPES_MANAGE_ALIAS,
    ),
    _rule(
        "volume_extension:type_update",
        ADMIN_API,
        "Update volume type.",
        "PUT /types",
        deprecated=_TYPES_MANAGE_ALIAS,
    ),
    _rule(
        "volume_extension:type_delete",
        ADMIN_API,
        "Delete volume type.",
        "DELETE /types",
        deprecated=_TYPES_MANAGE_ALIAS,
    ),
    _rule(
        "volume_extension:type_get",
        READER,
        "Get one specific volume type.",
        "GET /types/{type_id}",
    ),
    _rule("volume_extension:type_get_all", READER, "List volume types.", "GET /types/"),
    _rule(
        "volume_extension:access_types_extra_specs",
        READER,
        "Include the volume type's extra_specs attribute in the volume type list or show "
        "requests. The ability to make these calls is governed by other policies.",
        "GET /types/{type_id}",
        "GET /types",
    ),
    _rule(
        "volume_extension:access_types_qos_specs_id",
        ADMIN_API,
        "Include the volume type's QoS specifications ID attribute in the volume type list "
        "or show requests. The ability to make these calls is governed by other policies.",
        "GET /types/{type_id}",
        "GET /types",
    ),
    _rule(
        "volume_extension:volume_type_access",
        MEMBER,
        "Adds the boolean field 'os-volume-type-access:is_public' to the responses for these "
        "API calls. The ability to make these calls is governed by other policies.",
        "GET /types",
        "GET /types/{type_id}",
        "POST /types",
    ),
    _rule(
        "volume_extension:volume_type_access:addProjectAccess",
        ADMIN_API,
        "Add volume type access for project.",
        "POST /types/{type_id}/action (addProjectAccess)",
    ),
    _rule(
        "volume_extension:volume_type_access:removeProjectAccess",
        ADMIN_API,
        "Remove volume type access for project.",
        "POST /types/{type_id}/action (removeProjectAccess)",
    ),
    _rule(
        "volume_extension:types_extra_specs:index",
        READER,
        "List type extra specs.",
        "GET /types/{type_id}/extra_specs",
    ),
    _rule(
        "volume_extension:types_extra_specs:create",
        ADMIN_API,
        "Create type extra specs.",
        "POST /types/{type_id}/extra_specs",
    ),
    _rule(
        "volume_extension:types_extra_specs:show",
        READER,
        "Show one specified type extra specs.",
        "GET /types/{type_id}/extra_specs/{extra_spec_key}",
    ),
    _rule(
        "volume_extension:types_extra_specs:read_sensitive",
        ADMIN_API,
        "Include extra_specs fields that may reveal sensitive information about the "
        "deployment that should not be exposed to end users in various volume-type responses "
        "that show extra_specs. The ability to make these calls is governed by other policies.",
        "GET /types",
        "GET /types/{type_id}",
        "GET /types/{type_id}/extra_specs",
        "GET /types/{type_id}/extra_specs/{extra_spec_key}",
    ),
    _rule(
        "volume_extension:types_extra_specs:update",
        ADMIN_API,
        "Update type extra specs.",
        "PUT /types/{type_id}/extra_specs/{extra_spec_key}",
    ),
    _rule(
        "volume_extension:types_extra_specs:delete",
        ADMIN_API,
        "Delete type extra specs.",
        "DELETE /types/{type_id}/extra_specs/{extra_spec_key}",
    ),
)

_ENCRYPTION = "volume_extension:volume_type_encryption"
_ENCRYPTION_REASON = (
    f"Reason: '{_ENCRYPTION}' was a convenience policy that allowed you to set all volume "
    "encryption type policies to the same value."
)


def _encryption_rule(verb: str, description: str, *operations: str) -> policy.RuleDefault:
    return _rule(
        f"{_ENCRYPTION}:{verb}",
        ADMIN_API,
        description,
        *operations,
        deprecated=policy.DeprecatedRule(
            f"{_ENCRYPTION}:{verb}",
            f"rule:{_ENCRYPTION}",
            deprecated_reason=_ENCRYPTION_REASON,
            deprecated_since=_XENA,
        ),
    )


VOLUME_TYPE_ENCRYPTION_RULES: tuple[policy.RuleDefault, ...] = (
    policy.RuleDefault(
        _ENCRYPTION, ADMIN_API, description="DEPRECATED: This rule will be removed in Yoga."
    ),
    _encryption_rule(
        "create", "Create volume type encryption.", "POST /types/{type_id}/encryption"
    ),
    _encryption_rule(
        "get",
        "Show a volume type's encryption type, show an encryption specs item.",
        "GET /types/{type_id}/encryption",
        "GET /types/{type_id}/encryption/{key}",
    ),
    _encryption_rule(
        "update",
        "Update volume type encryption.",
        "PUT /types/{type_id}/encryption/{encryption_id}",
    ),
    _encryption_rule(
        "delete",
        "Delete volume type encryption.",
        "DELETE /types/{type_id}/encryption/{encryption_id}",
    ),
)

ATTACHMENT_RULES: tuple[policy.RuleDefault, ...] = (
    _rule("volume:attachment_create", MEMBER, "Create attachment.", "POST /attachments"),
    _rule(
        "volume:attachment_update",
        MEMBER,
        "Update attachment.",
        "PUT /attachments/{attachment_id}",
    ),
    _rule(
        "volume:attachment_delete",
        MEMBER,
        "Delete attachment.",
        "DELETE /attachments/{attachment_id}",
    ),
    _rule(
        "volume:attachment_complete",
        MEMBER,
        "Mark a volume attachment process as completed (in-use)",
        "POST /attachments/{attachment_id}/action (os-complete)",
    ),
    _rule(
        "volume:multiattach_bootable_volume",
        MEMBER,
        "Allow multiattach of bootable volumes.",
        "POST /attachments",
    ),
)

ADMIN_RESOURCE_RULES: tuple[policy.RuleDefault, ...] = (
    _rule(
        "volume_extension:quotas:show",
        READER,
        "Show project quota (including usage and default).",
        "GET /os-quota-sets/{project_id}",
        "GET /os-quota-sets/{project_id}/default",
        "GET /os-quota-sets/{project_id}?usage=True",
    ),
    _rule(
        "volume_extension:quotas:update",
        ADMIN_API,
        "Update project quota.",
        "PUT /os-quota-sets/{project_id}",
    ),
    _rule(
        "volume_extension:quotas:delete",
        ADMIN_API,
        "Delete project quota.",
        "DELETE /os-quota-sets/{project_id}",
    ),
    _rule(
        "limits_extension:used_limits",
        READER,
        "Show limits with used limit attributes.",
        "GET /limits",
    ),
    _rule(
        "scheduler_extension:scheduler_stats:get_pools",
        ADMIN_API,
        "List all backend pools.",
        "GET /scheduler-stats/get_pools",
    ),
    _rule("volume_extension:services:index", ADMIN_API, "List all services.", "GET /os-services"),
)

MESSAGE_RULES: tuple[policy.RuleDefault, ...] = (
    _rule("message:get_all", READER, "List messages.", "GET /messages"),
    _rule("message:get", READER, "Show message.", "GET /messages/{message_id}"),
    _rule("message:delete", MEMBER, "Delete message.", "DELETE /messages/{message_id}"),
)

RULES: tuple[policy.RuleDefault, ...] = (
    *BASE_RULES,
    *VOLUME_RULES,
    *VOLUME_ACTION_RULES,
    *VOLUME_METADATA_RULES,
    *SNAPSHOT_RULES,
    *VOLUME_TYPE_RULES,
    *VOLUME_TYPE_ENCRYPTION_RULES,
    *ATTACHMENT_RULES,
    *ADMIN_RESOURCE_RULES,
    *MESSAGE_RULES,
)


def list_rules() -> list[policy.RuleDefault]:
    """Every registered rule, in sample-file order (oslo.policy's ``list_rules`` hook)."""
    return list(RULES)
