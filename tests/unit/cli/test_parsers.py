"""`cinderblock --help` and every parse answer without importing the service stack: the
parser module pulls in argparse and a few constants, and `main` imports the chosen
command's module only after parsing (issue 11: CLI start-up)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cinderblock.cli.parsers import build_parser

pytestmark = pytest.mark.unit

HEAVY = ("pydantic", "asyncpg", "aiohttp", "eventsourcing", "nats", "oslo_policy")


def test_parsing_imports_nothing_heavy() -> None:
    probe = (
        "import sys\n"
        "from cinderblock.cli.parsers import build_parser\n"
        "build_parser().parse_args(['history', '6d1f0c8e-5b0a-4c55-9d43-1f2e3a4b5c6d'])\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["dev", "--processes"],
        ["dev", "--workers", "4"],
        ["serve", "projector"],
        ["serve", "api", "--workers", "2"],
        ["bench", "--url", "http://127.0.0.1:8776", "--burst"],
        ["state", "6d1f0c8e-5b0a-4c55-9d43-1f2e3a4b5c6d", "--version", "3"],
        ["audit", "--since", "2026-12-01"],
        ["usage", "--format", "csv"],
        ["replay", "--projection", "volumes,billing", "--json"],
        ["verify", "--workers", "2"],
        ["bench-log", "--events", "10"],
    ],
)
def test_every_command_still_parses(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.command == argv[0]


def test_an_unknown_projection_is_refused_at_parse_time(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["replay", "--projection", "nope"])
    assert refused.value.code == 2
    assert "unknown projection" in capsys.readouterr().err
