"""The database a tooling command works on without CINDERBLOCK_DATABASE_URL: the embedded
PostgreSQL of --data-dir, reused while `cinderblock dev` runs there, else started for the
command and stopped afterwards."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from cinderblock.cli.embedded import EmbeddedPostgres
from cinderblock.cli.target import TargetError, database
from cinderblock.config.settings import Settings
from tests.helpers.dev import DevProcess, cli, dev_dir, leftover_servers, until_available

__all__ = ["cli", "dev_dir"]  # the fixtures, used below


def _local(data_dir: Path) -> Settings:
    return Settings(database_url="", data_dir=data_dir)


async def _count_events(dsn: str, volume_id: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM events WHERE originator_id = $1", uuid.UUID(volume_id)
        )
        return count
    finally:
        await conn.close()


async def test_running_dev_is_used_and_left_running(dev_dir: Path, cli: Any) -> None:
    dev = DevProcess(dev_dir)
    await dev.start()
    try:
        postgres = EmbeddedPostgres(dev_dir)
        postmaster = postgres.postmaster_pid()
        assert postmaster is not None
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{dev.url}/v3/{dev.project}/volumes",
                headers=dev.headers(),
                json={"volume": {"size": 1}},
            ) as resp:
                assert resp.status == 202
                vid = (await resp.json())["volume"]["id"]
            await until_available(session, dev, vid)
            async with database(_local(dev_dir)) as dsn:
                assert await _count_events(dsn, vid) >= 2  # created, create completed
            # Untouched: the same postmaster, and dev still answers.
            assert postgres.postmaster_pid() == postmaster
            assert (await until_available(session, dev, vid))["id"] == vid
            code, out = await cli("history", vid, "--json", "--data-dir", str(dev_dir))
            assert code == 0
            events = [json.loads(line)["event"] for line in out.splitlines()]
            assert events == ["Volume.Created", "Volume.CreateCompleted"]
            assert postgres.postmaster_pid() == postmaster
    finally:
        assert await dev.stop() == 0
    # Stopped: the command starts the data dir's server for itself and stops it again.
    code, out = await cli("state", vid, "--version", "2", "--data-dir", str(dev_dir))
    assert code == 0
    assert json.loads(out)["volume"]["status"] == "available"
    assert postgres.postmaster_pid() is None
    assert await asyncio.to_thread(leftover_servers, dev_dir) == []


async def test_stopped_data_dir_is_started_for_the_command_and_stopped(dev_dir: Path) -> None:
    postgres = EmbeddedPostgres(dev_dir)
    dsn = await asyncio.to_thread(postgres.start)
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('here')")
    await conn.close()
    await asyncio.to_thread(postgres.stop)
    assert postgres.postmaster_pid() is None

    async with database(_local(dev_dir)) as dsn:
        assert postgres.postmaster_pid() is not None
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT v FROM kept") == "here"
        finally:
            await conn.close()
    assert postgres.postmaster_pid() is None
    assert postgres.server_processes() == []


async def test_database_url_wins_and_an_empty_data_dir_is_an_error(dev_dir: Path) -> None:
    production = Settings(database_url="postgresql://db.example/cinder", data_dir=dev_dir)
    async with database(production) as dsn:
        assert dsn == "postgresql://db.example/cinder"
    with pytest.raises(TargetError, match="no embedded PostgreSQL"):
        async with database(_local(dev_dir / "nothing-here")):
            pass
    assert not (dev_dir / "nothing-here").exists()
