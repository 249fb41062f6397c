"""Log lines for people on a terminal, JSON for everything else (``--log-format``)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from cinderblock.cli.parsers import build_parser
from cinderblock.config.settings import Settings, SettingsError, load_settings
from cinderblock.runtime.infra import JsonFormatter, TextFormatter, log_format

pytestmark = pytest.mark.unit


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record() -> logging.LogRecord:
    record = logging.LogRecord(
        "cinderblock.api.access", logging.INFO, __file__, 1, "GET %s 200", ("/v3",), None
    )
    record.__dict__.update({"request_id": "req-1", "project_id": "p1", "fault": None})
    return record


@pytest.mark.parametrize(
    ("chosen", "stream", "expected"),
    [
        ("auto", Terminal(), "text"),
        ("auto", io.StringIO(), "json"),
        ("json", Terminal(), "json"),
        ("text", io.StringIO(), "text"),
    ],
)
def test_auto_is_text_on_a_terminal_only(chosen: str, stream: io.StringIO, expected: str) -> None:
    assert log_format(Settings(log_format=chosen), stream) == expected  # type: ignore[arg-type]


def test_the_default_is_auto_and_a_bad_value_is_refused() -> None:
    assert load_settings({}).log_format == "auto"
    assert load_settings({"CINDERBLOCK_LOG_FORMAT": "text"}).log_format == "text"
    with pytest.raises(SettingsError):
        load_settings({"CINDERBLOCK_LOG_FORMAT": "xml"})


def test_the_option_comes_before_the_command_and_wins_over_the_environment() -> None:
    args = build_parser().parse_args(["--log-format", "json", "serve", "api"])
    assert args.log_format == "json"
    assert build_parser().parse_args(["serve", "api"]).log_format is None
    settings = load_settings({"CINDERBLOCK_LOG_FORMAT": "text"}, log_format=args.log_format)
    assert settings.log_format == "json"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--log-format", "xml", "serve", "api"])


def test_json_lines_carry_every_field() -> None:
    entry = json.loads(JsonFormatter().format(_record()))
    assert entry["message"] == "GET /v3 200"
    assert (entry["request_id"], entry["project_id"], entry["fault"]) == ("req-1", "p1", None)


def test_text_lines_read_as_a_sentence_then_the_fields_that_have_a_value() -> None:
    line = TextFormatter().format(_record())
    assert line.endswith("INFO cinderblock.api.access GET /v3 200 request_id=req-1 project_id=p1")
