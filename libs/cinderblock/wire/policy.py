"""Policy: Cinder's rule names and default check strings, evaluated without oslo.

Supports the oslo.policy check-string syntax used by Cinder's defaults: ``role:<r>``,
``project_id:%(project_id)s``, ``user_id:%(user_id)s``, ``is_admin:True``,
``is_admin_project:True``, ``rule:<name>``, ``@``, ``!``, ``and``, ``or``, ``not`` and
parentheses. Roles imply each other as Keystone's defaults do: admin ⇒ member ⇒ reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ADMIN = "rule:admin_api"
MEMBER = "role:admin or (role:member and project_id:%(project_id)s)"
READER = "role:admin or (role:reader and project_id:%(project_id)s)"

DEFAULT_RULES: Mapping[str, str] = {
    "admin_api": "is_admin:True or (role:admin and is_admin_project:True)",
    "context_is_admin": "role:admin",
    "volume:create": MEMBER,
    "volume:get": READER,
    "volume:get_all": READER,
    "volume:update": MEMBER,
    "volume:delete": MEMBER,
    "volume:force_delete": ADMIN,
    "volume:extend": MEMBER,
    "volume:extend_attached_volume": MEMBER,
    "volume:update_readonly_flag": MEMBER,
    "volume:update_volume_metadata": MEMBER,
    "volume:get_volume_metadata": READER,
    "volume:delete_volume_metadata": MEMBER,
    "volume_extension:volume_admin_actions:reset_status": ADMIN,
    "volume_extension:volume_admin_actions:force_delete": ADMIN,
    "volume_extension:volume_admin_actions:force_detach": ADMIN,
    "volume_extension:volume_actions:attach": MEMBER,
    "volume_extension:volume_actions:detach": MEMBER,
    "volume_extension:volume_actions:reserve": MEMBER,
    "volume_extension:volume_actions:unreserve": MEMBER,
    "volume_extension:volume_actions:begin_detaching": MEMBER,
    "volume_extension:volume_actions:roll_detaching": MEMBER,
    "volume_extension:volume_actions:initialize_connection": MEMBER,
    "volume_extension:volume_actions:terminate_connection": MEMBER,
    "volume_extension:volume_unmanage": ADMIN,
    "volume_extension:volume_image_metadata:set": MEMBER,
    "volume_extension:volume_image_metadata:remove": MEMBER,
    "volume_extension:volume_host_attribute": ADMIN,
    "volume_extension:volume_mig_status_attribute": ADMIN,
    "volume_extension:volume_tenant_attribute": READER,
}

IMPLIED_ROLES: Mapping[str, frozenset[str]] = {
    "admin": frozenset({"admin", "member", "reader"}),
    "member": frozenset({"member", "reader"}),
}


def expand_roles(roles: frozenset[str]) -> frozenset[str]:
    out: set[str] = set()
    for role in roles:
        out |= IMPLIED_ROLES.get(role, frozenset({role}))
    return frozenset(out)


@dataclass(frozen=True)
class Credentials:
    user_id: str
    project_id: str
    roles: frozenset[str]
    is_admin: bool
    is_admin_project: bool = True


class PolicyError(Exception):
    """Raised when a rule denies the caller; ``rule`` names it (rendered as 403)."""

    def __init__(self, rule: str) -> None:
        super().__init__(f"Policy doesn't allow {rule} to be performed.")
        self.rule = rule


def _tokens(text: str) -> list[str]:
    """Split on whitespace, then peel parentheses off each word's ends (as oslo.policy does),
    so ``project_id:%(project_id)s`` stays one atom."""
    tokens: list[str] = []
    for word in text.split():
        opening = len(word) - len(word.lstrip("("))
        core = word.lstrip("(")
        closing = 0
        while core.endswith(")") and core.count("(") < core.count(")"):
            core, closing = core[:-1], closing + 1
        tokens += ["("] * opening + ([core] if core else []) + [")"] * closing
    return tokens


class Enforcer:
    def __init__(self, rules: Mapping[str, str] | None = None) -> None:
        self.rules = dict(DEFAULT_RULES) | dict(rules or {})

    def allowed(self, rule: str, creds: Credentials, target: Mapping[str, str]) -> bool:
        return self._check(self.rules.get(rule, "!"), creds, target, depth=0)

    def authorize(self, rule: str, creds: Credentials, target: Mapping[str, str]) -> None:
        if not self.allowed(rule, creds, target):
            raise PolicyError(rule)

    def _check(self, text: str, creds: Credentials, target: Mapping[str, str], depth: int) -> bool:
        if depth > 10:
            return False
        tokens = _tokens(text) or ["@"]
        parser = _Parser(tokens, lambda atom: self._atom(atom, creds, target, depth))
        return parser.parse()

    def _atom(self, atom: str, creds: Credentials, target: Mapping[str, str], depth: int) -> bool:
        if atom == "@":
            return True
        if atom == "!":
            return False
        kind, _, value = atom.partition(":")
        if kind == "rule":
            return self._check(self.rules.get(value, "!"), creds, target, depth + 1)
        if kind == "role":
            return value.lower() in expand_roles(creds.roles)
        if kind == "is_admin":
            return creds.is_admin == (value.lower() == "true")
        if kind == "is_admin_project":
            return creds.is_admin_project == (value.lower() == "true")
        if value.startswith("%(") and value.endswith(")s"):
            wanted = target.get(value[2:-2])
        else:
            wanted = value
        have = {"project_id": creds.project_id, "user_id": creds.user_id}.get(kind)
        return have is not None and wanted is not None and have == wanted


class _Parser:
    """expr := term ('or' term)*; term := factor ('and' factor)*; factor := 'not' factor |
    '(' expr ')' | atom."""

    def __init__(self, tokens: list[str], atom: object) -> None:
        self.tokens = tokens
        self.i = 0
        self.atom = atom

    def parse(self) -> bool:
        return self._expr()

    def _peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _expr(self) -> bool:
        result = self._term()
        while self._peek() == "or":
            self.i += 1
            right = self._term()
            result = result or right
        return result

    def _term(self) -> bool:
        result = self._factor()
        while self._peek() == "and":
            self.i += 1
            right = self._factor()
            result = result and right
        return result

    def _factor(self) -> bool:
        token = self._peek()
        self.i += 1
        if token == "not":
            return not self._factor()
        if token == "(":
            result = self._expr()
            self.i += 1  # ')'
            return result
        return bool(self.atom(token or "!"))  # type: ignore[operator]
