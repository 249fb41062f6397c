"""Policy: Cinder's rule names and defaults, enforced by oslo.policy, overridable by policy.yaml.

The rules are registered from :mod:`cinderblock.wire.policy_rules` with Cinder's names and
default check strings. A deployer's ``policy.yaml`` (Cinder's format: ``"rule name": "check
string"``, only the rules that change) overrides them; it is read once, when the
:class:`Enforcer` is built, and anything wrong with it fails there with
:class:`PolicyConfigError` rather than at the first request.

oslo.policy runs on a private ``oslo_config.cfg.ConfigOpts``: no command line, no environment,
no config file and no search of ``/etc`` or ``policy.d``; only the file given is read.
``enforce_new_defaults`` is on (deprecated check strings are never OR-ed in); oslo.policy has no
``enforce_scope`` switch any more and none of these rules declares ``scope_types``.

Roles imply each other as Keystone's defaults do (admin ⇒ member ⇒ reader); they are expanded
before enforcing, since no Keystone token did it for us.
"""

from __future__ import annotations

import functools
import logging
import os
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from oslo_config import cfg
from oslo_policy import policy

from cinderblock.wire.policy_rules import RULES

DEFAULT_RULES: Mapping[str, str] = MappingProxyType({rule.name: rule.check_str for rule in RULES})

IMPLIED_ROLES: Mapping[str, frozenset[str]] = {
    "admin": frozenset({"admin", "member", "reader"}),
    "member": frozenset({"member", "reader"}),
}

# Decisions are pure functions of (rule, credentials, target) once the rules are loaded, unless
# a rule calls out (oslo.policy's ``http:``/``https:`` checks, or a plugin): then no cache.
_DECISION_CACHE_SIZE = 4096
_Target = tuple[tuple[str, Any], ...]


def expand_roles(roles: frozenset[str]) -> frozenset[str]:
    out: set[str] = set()
    for role in roles:
        out |= IMPLIED_ROLES.get(role.lower(), frozenset({role}))
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


class PolicyConfigError(ValueError):
    """The policy file (or the rule overrides) cannot be used; raised by ``Enforcer()``."""


class UnknownRuleError(LookupError):
    """The code enforced a rule name that is not registered: a bug, not a denial."""

    def __init__(self, rule: str) -> None:
        super().__init__(f"Policy rule {rule!r} is not registered.")
        self.rule = rule


class Enforcer:
    """Cinder's rules, overridden by ``rules`` (in code) and then by ``policy_file``.

    ``rules`` maps rule names to check strings that replace the defaults (or add helper rules);
    the deployer's ``policy_file`` has the last word. Enforcing a name that is not registered
    raises :class:`UnknownRuleError`.
    """

    def __init__(
        self,
        rules: Mapping[str, str] | None = None,
        policy_file: str | os.PathLike[str] | None = None,
    ) -> None:
        overrides = dict(rules or {})
        for name, check_str in overrides.items():
            _parse("rules", name, check_str)
        path = None if policy_file is None else Path(policy_file).absolute()
        source = "rules" if path is None else f"policy file {path}"
        if path is not None:
            for name, check_str in _read_policy_file(path).items():
                _parse(source, name, check_str)

        self._oslo = policy.Enforcer(
            _private_conf(),
            policy_file=None if path is None else str(path),
            use_conf=path is not None,
        )
        self._oslo.conf.set_override("policy_dirs", [], group="oslo_policy")
        self._oslo.conf.set_override("enforce_new_defaults", True, group="oslo_policy")
        self._oslo.register_defaults(_defaults(overrides))
        if path is None:
            registered = self._oslo.registered_rules.values()
            self._oslo.set_rules(policy.Rules({r.name: r.check for r in registered}))
        else:
            self._oslo.load_rules(force_reload=True)
        # Rules are fixed from here on: no stat() of the file on every enforce().
        self._oslo.use_conf = False
        _check_references(source, self._oslo.rules)
        if not self._oslo.check_rules():
            raise PolicyConfigError(f"{source}: rules refer to each other in a cycle")

        self._registered = frozenset(self._oslo.registered_rules)
        self._decide: Callable[[str, Credentials, _Target], bool] = self._evaluate
        if all(_is_pure(check) for check in self._oslo.rules.values()):
            self._decide = functools.lru_cache(maxsize=_DECISION_CACHE_SIZE)(self._evaluate)

    @property
    def rules(self) -> Mapping[str, str]:
        """The rules in force (canonical check strings), for inspection."""
        return {name: str(check) for name, check in self._oslo.rules.items()}

    def allowed(self, rule: str, creds: Credentials, target: Mapping[str, str]) -> bool:
        if rule not in self._registered:
            raise UnknownRuleError(rule)
        items = tuple(sorted(target.items()))
        try:
            hash(items)
        except TypeError:  # an unhashable target value: decide without the cache
            return self._evaluate(rule, creds, items)
        return self._decide(rule, creds, items)

    def authorize(self, rule: str, creds: Credentials, target: Mapping[str, str]) -> None:
        if not self.allowed(rule, creds, target):
            raise PolicyError(rule)

    def _evaluate(self, rule: str, creds: Credentials, target: _Target) -> bool:
        values = {
            "user_id": creds.user_id,
            "project_id": creds.project_id,
            "roles": sorted(expand_roles(creds.roles)),
            "is_admin": creds.is_admin,
            "is_admin_project": creds.is_admin_project,
        }
        return bool(self._oslo.enforce(rule, dict(target), values))


def generate_sample() -> str:
    """A policy.yaml with every default commented out, as oslopolicy-sample-generator writes."""
    parts = [
        "# Cinderblock policy (Cinder's rule names and defaults).\n"
        "# Uncomment and edit only the rules you change; point CINDERBLOCK_POLICY_FILE at it.\n"
    ]
    for rule in RULES:
        text = ""
        if rule.description:
            text += textwrap.fill(
                " ".join(rule.description.split()),
                70,
                initial_indent="# ",
                subsequent_indent="# ",
            )
            text += "\n"
        for op in getattr(rule, "operations", ()):
            text += f"# {op['method']}  {op['path']}\n"
        text += f'#"{rule.name}": "{rule.check_str}"\n'
        old = rule.deprecated_rule
        if old is not None and old.name != rule.name:
            text += f'# DEPRECATED: "{old.name}" still overrides this rule, with a warning.\n'
        parts.append(text)
    return "\n".join(parts)


def _private_conf() -> cfg.ConfigOpts:
    """A ConfigOpts that reads nothing: not sys.argv, not the environment, no file or dir."""
    conf = cfg.ConfigOpts()
    conf(
        args=[],
        project="cinderblock",
        prog="cinderblock",
        default_config_files=[],
        default_config_dirs=[],
        use_env=False,
    )
    return conf


def _defaults(overrides: Mapping[str, str]) -> list[policy.RuleDefault]:
    """The registered rules, with the check strings given in code replacing the defaults."""
    out: list[policy.RuleDefault] = []
    for rule in RULES:
        if rule.name not in overrides:
            out.append(rule)
            continue
        check_str = overrides[rule.name]
        if isinstance(rule, policy.DocumentedRuleDefault):
            out.append(
                policy.DocumentedRuleDefault(
                    rule.name,
                    check_str,
                    rule.description,
                    rule.operations,
                    deprecated_rule=rule.deprecated_rule,
                )
            )
        else:
            out.append(
                policy.RuleDefault(
                    rule.name,
                    check_str,
                    rule.description,
                    deprecated_rule=rule.deprecated_rule,
                )
            )
    out += [
        policy.RuleDefault(name, s) for name, s in overrides.items() if name not in DEFAULT_RULES
    ]
    return out


def _read_policy_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyConfigError(f"policy file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyConfigError(f"policy file {path} cannot be read: {e}") from None
    try:
        data: object = policy.parse_file_contents(text)  # YAML (or JSON), as oslo.policy reads it
    except ValueError as e:
        raise PolicyConfigError(f"policy file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise PolicyConfigError(
            f"policy file {path} must map rule names to check strings, "
            f"not be a {type(data).__name__}"
        )
    for name, check_str in data.items():
        if not isinstance(name, str):
            raise PolicyConfigError(f"policy file {path}: rule name {name!r} is not a string")
        if check_str is None:
            raise PolicyConfigError(
                f"policy file {path}: rule {name!r} has no check string; quote it, as in "
                f'"{name}": "!" (an unquoted ! is a YAML tag and would read as empty, '
                "which allows everyone)"
            )
        if not isinstance(check_str, str):
            raise PolicyConfigError(
                f"policy file {path}: rule {name!r} must be a quoted check string, "
                f"not {check_str!r}"
            )
    return data


class _ParseErrors(logging.Filter):
    """Collects (and silences) what oslo.policy's parser logs about a rule it cannot read: it
    would otherwise deny silently, with the rule replaced by ``!``."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.messages.append(record.getMessage())
        return False


class _AnyTarget(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return key


def _parse(source: str, name: str, check_str: str) -> None:
    """Fail on a check string oslo.policy would not understand or could not substitute."""
    errors = _ParseErrors()
    parser_log = logging.getLogger("oslo_policy._parser")
    parser_log.addFilter(errors)
    try:
        check = policy.RuleDefault(name, check_str).check
    finally:
        parser_log.removeFilter(errors)
    if errors.messages:
        raise PolicyConfigError(f"{source}: rule {name!r}: cannot parse {check_str!r}")
    for leaf in _leaves(check):
        if isinstance(leaf, policy.Check):
            try:
                leaf.match % _AnyTarget()
            except (ValueError, TypeError) as e:
                raise PolicyConfigError(
                    f"{source}: rule {name!r}: bad %(...)s substitution in {leaf.match!r}: {e}"
                ) from None


def _check_references(source: str, rules: Mapping[str, object]) -> None:
    for name, check in rules.items():
        for leaf in _leaves(check):
            if isinstance(leaf, policy.RuleCheck) and leaf.match not in rules:
                raise PolicyConfigError(
                    f"{source}: rule {name!r} refers to rule:{leaf.match}, which is not defined"
                )


def _leaves(check: object) -> Iterator[object]:
    if isinstance(check, (policy.AndCheck, policy.OrCheck)):
        for sub in check.rules:
            yield from _leaves(sub)
    elif isinstance(check, policy.NotCheck):
        yield from _leaves(check.rule)
    else:
        yield check


# The check classes whose answer depends only on credentials, target and other rules.
_PURE_CHECKS: frozenset[type] = frozenset(
    type(policy.RuleDefault("_", s).check)
    for s in ("@", "!", "rule:_", "role:_", "project_id:%(project_id)s")
)


def _is_pure(check: object) -> bool:
    return all(type(leaf) in _PURE_CHECKS for leaf in _leaves(check))
