"""`cinderblock state` (issue 13): without --at or --version it prints the volume as it is
now; a version beyond the volume's and a malformed or unserved microversion are clear
errors with exit code 2, never tracebacks."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from cinderblock.cli.main import main
from tests.e2e.conftest import System


@pytest.fixture
def cli(
    system: System, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Any]:
    """``cinderblock <args>`` in a thread against the system's database: (code, out, err)."""
    monkeypatch.setenv("CINDERBLOCK_DATABASE_URL", system.settings.database_url)
    monkeypatch.setenv("CINDERBLOCK_LOG_LEVEL", "WARNING")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    async def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = await asyncio.to_thread(main, list(args))
        except SystemExit as exited:  # argparse refusing an argument
            code = int(exited.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    try:
        yield run
    finally:
        root.handlers[:], root.level = handlers, level


async def test_state_without_a_flag_is_the_volume_now(system: System, cli: Any) -> None:
    volume = await system.available_volume(size=1)
    code, out, _ = await cli("state", volume["id"])
    assert code == 0
    shown = json.loads(out)["volume"]
    assert (shown["id"], shown["status"], shown["size"]) == (volume["id"], "available", 1)


async def test_a_version_beyond_the_volume_is_refused(system: System, cli: Any) -> None:
    volume = await system.available_volume(size=1)
    code, out, err = await cli("state", volume["id"], "--version", "2")
    assert code == 0
    assert json.loads(out)["volume"]["status"] == "available"
    code, out, err = await cli("state", volume["id"], "--version", "50")
    assert (code, out) == (2, "")
    assert f"volume {volume['id']} has versions 1 to 2; --version 50 is beyond them" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--microversion", "3.x"], "API Version String 3.x is of invalid format"),
        (["--microversion", "3.99"], "microversion 3.99 is not served: 3.0 to 3.71"),
        (["--version", "0"], "not a whole number of at least 1: '0'"),
        (["--version", "two"], "not a whole number of at least 1: 'two'"),
    ],
)
async def test_bad_arguments_exit_2_with_a_message(cli: Any, argv: list[str], message: str) -> None:
    code, out, err = await cli("state", "6d1f0c8e-5b0a-4c55-9d43-1f2e3a4b5c6d", *argv)
    assert (code, out) == (2, "")
    assert message in err
    assert "Traceback" not in err
