"""The volume-action table against its sources: every action key of Cinder's api-ref request
samples and of spec §3 has a row, no row names an action neither lists unless it is a
documented extension, and every row has a model, a handler, a success status and policy
rules that Cinder registers (``cinderblock.wire.policy_rules``). The spec's quick
reference (§3) and raw replies (§1.5) agree with the rows."""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

import pytest

from cinderblock.api.action_table import ACTION_TABLE, ActionSpec
from cinderblock.wire.actions import ACTION_MODELS
from cinderblock.wire.actions_base import ActionBody
from cinderblock.wire.policy_rules import RULES
from tests.helpers.apiref import SAMPLES, require_samples

pytestmark = pytest.mark.unit

_ROOT = Path(__file__).resolve().parents[3]
_SPEC_CANDIDATES = (
    os.environ.get("CINDERBLOCK_SPEC", ""),
    str(_ROOT.parent / "shared" / "spec" / "volume-actions.md"),
    "/work/shared/spec/volume-actions.md",
)
SPEC = next((Path(c) for c in _SPEC_CANDIDATES if c and Path(c).is_file()), None)

# Rows for actions outside spec §3's 23, each with where it is decided.
EXTENSIONS = {
    "os-reimage": "3.68, Nova's rebuild of a volume-backed server (issue 9 item 6)",
}
# Action keys of the api-ref samples that are not served (yet): "There is no such action".
NOT_SERVED = {
    "os-extend_volume_completion": "3.71 admin action of drivers that extend on the host; "
    "not among spec §3's 23 actions (spec §8)",
}
REGISTERED_RULES = frozenset(rule.name for rule in RULES)


def _spec_text() -> str:
    if SPEC is None:
        pytest.skip("spec/volume-actions.md not found (set CINDERBLOCK_SPEC)")
    return SPEC.read_text()


def _action_samples() -> list[Path]:
    """The volume-action request samples (snapshot, type, attachment and quota samples are
    other resources'; ``volumes/`` holds create and update bodies)."""
    top = [
        path
        for path in SAMPLES.glob("*-request.json")
        if path.name.startswith(("volume-", "host-", "image-metadata-"))
        and not path.name.startswith("volume-type-")
    ]
    return sorted(top + list((SAMPLES / "volume_actions").glob("*-request.json")))


def api_ref_keys() -> set[str]:
    require_samples()
    keys: set[str] = set()
    for path in _action_samples():
        body = json.loads(path.read_text())
        assert isinstance(body, dict), path
        assert len(body) == 1, path
        keys |= set(body)
    assert len(keys) > 20, "the sample filter found too few action samples"
    return keys


def spec_keys() -> set[str]:
    keys = set(re.findall(r"^### 3\.\d+ (\S+)", _spec_text(), flags=re.MULTILINE))
    assert len(keys) == 23, sorted(keys)
    return keys


def quick_reference() -> dict[str, tuple[int, set[str]]]:
    """Spec §3's quick reference: success status and the full rule names of each row."""
    text = _spec_text()
    block = text[text.index("Quick reference:") : text.index("### 3.1 ")]
    rows: dict[str, tuple[int, set[str]]] = {}
    for line in block.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith(("os-", "revert")):
            continue
        status = re.search(r"\d{3}", cells[2])
        assert status is not None, line
        named = set(re.findall(r"`([^`]+)`", cells[3])) & REGISTERED_RULES
        rows[cells[0]] = (int(status.group()), named)
    assert len(rows) == 23, sorted(rows)
    return rows


def raw_reply_keys() -> set[str]:
    """Spec §1.5: the actions whose replies Cinder builds by hand."""
    found = re.search(r"build the raw response themselves \(([^)]*)\)", _spec_text())
    assert found is not None
    return set(re.findall(r"\bos-[a-z_]+", found.group(1)))


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(key, marks=pytest.mark.xfail(reason=NOT_SERVED[key]))
        if key in NOT_SERVED
        else key
        for key in sorted(api_ref_keys() if SAMPLES.is_dir() else set())
    ],
)
def test_every_api_ref_action_has_a_row(key: str) -> None:
    assert key in ACTION_TABLE


def test_every_spec_action_has_a_row() -> None:
    assert spec_keys() - set(ACTION_TABLE) == set()


def test_no_row_beyond_the_api_ref_and_the_spec_but_the_documented_extensions() -> None:
    assert set(ACTION_TABLE) - api_ref_keys() == set()
    assert set(ACTION_TABLE) - spec_keys() == set(EXTENSIONS)
    assert not set(NOT_SERVED) & set(ACTION_TABLE), "served now: drop it from NOT_SERVED"


@pytest.mark.parametrize("spec", ACTION_TABLE.values(), ids=list(ACTION_TABLE))
def test_each_row_is_complete(spec: ActionSpec) -> None:
    assert issubclass(spec.model, ActionBody)
    assert spec.key == spec.model.ACTION
    assert ACTION_MODELS[spec.key] is spec.model  # the one model registry is wire's
    assert inspect.iscoroutinefunction(spec.handler)
    assert len(inspect.signature(spec.handler).parameters) == 4  # deps, ctx, volume_id, body
    assert spec.rules
    assert set(spec.rules) <= REGISTERED_RULES, set(spec.rules) - REGISTERED_RULES
    assert len(set(spec.rules)) == len(spec.rules)
    assert spec.status in (200, 202)


def test_the_models_and_the_rows_name_the_same_actions() -> None:
    assert set(ACTION_MODELS) == set(ACTION_TABLE)


def test_status_and_rules_agree_with_the_spec_quick_reference() -> None:
    for key, (status, rules) in quick_reference().items():
        spec = ACTION_TABLE[key]
        assert spec.status == status, key
        assert rules <= set(spec.rules), (key, rules - set(spec.rules))


def test_raw_replies_are_the_spec_ones() -> None:
    raw = {key for key, spec in ACTION_TABLE.items() if spec.raw_reply}
    assert raw == raw_reply_keys()
