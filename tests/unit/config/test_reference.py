"""docs/configuration.md is generated from the Settings model and the config-file option
table: it must be what `cinderblock config --reference` prints now, name every setting, and
its example file must load."""

from __future__ import annotations

from pathlib import Path

import pytest

from cinderblock.config.files import OPTIONS
from cinderblock.config.reference import EXAMPLE, render_reference
from cinderblock.config.settings import Settings, load_settings

pytestmark = pytest.mark.unit

REFERENCE = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_the_reference_is_up_to_date() -> None:
    assert REFERENCE.read_text() == render_reference(), (
        "docs/configuration.md is stale: run `cinderblock config --reference > "
        "docs/configuration.md`"
    )


def test_every_setting_has_help_and_a_row() -> None:
    text = render_reference()
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert f"| `{name}` | `CINDERBLOCK_{name.upper()}` |" in text


def test_every_file_option_names_a_setting_once() -> None:
    assert {o.field for o in OPTIONS} <= set(Settings.model_fields)
    places = [(o.section, o.name) for o in OPTIONS]
    assert len(places) == len(set(places))


def test_the_example_loads(tmp_path: Path) -> None:
    conf = tmp_path / "cinderblock.conf"
    conf.write_text(EXAMPLE)
    settings = load_settings({}, config_files=[conf])
    assert settings.auth_strategy == "keystone"
    assert settings.pools == ("node1@file-a#pool0:1000", "node1@file-b#pool0:1000:multiattach")
    assert settings.stream_replicas == 3
