"""`cinderblock replay` and `cinderblock verify` on the embedded default: while
`cinderblock dev` runs on the data dir (its live projector keeps going and the API keeps
serving), and on a stopped data dir (the server is started for the command)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from cinderblock.cli.embedded import EmbeddedPostgres
from tests.helpers.dev import DevProcess, cli, dev_dir, until_available

__all__ = ["cli", "dev_dir"]  # the fixtures, used below


async def test_replay_and_verify_against_a_running_dev_and_a_stopped_one(
    dev_dir: Path, cli: Any
) -> None:
    dev = DevProcess(dev_dir)
    await dev.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{dev.url}/v3/{dev.project}/volumes",
                headers=dev.headers(),
                json={"volume": {"size": 1, "name": "before-replay"}},
            ) as resp:
                assert resp.status == 202
                vid = (await resp.json())["volume"]["id"]
            await until_available(session, dev, vid)
            code, out = await cli("verify", "--data-dir", str(dev_dir))
            assert code == 0, out
            assert "verify: identical" in out
            code, out = await cli("replay", "--json", "--data-dir", str(dev_dir))
            assert code == 0, out
            assert json.loads(out)["events"] >= 2
            # The API serves the swapped-in tables, and the live projector goes on into them.
            volume = await until_available(session, dev, vid)
            assert volume["name"] == "before-replay"
            async with session.post(
                f"{dev.url}/v3/{dev.project}/volumes/{vid}/action",
                headers=dev.headers(),
                json={"os-set_bootable": {"bootable": True}},
            ) as resp:
                assert resp.status == 200
            async with session.get(
                f"{dev.url}/v3/{dev.project}/volumes/{vid}", headers=dev.headers()
            ) as resp:
                assert (await resp.json())["volume"]["bootable"] == "true"
            code, out = await cli("verify", "--data-dir", str(dev_dir))
            assert code == 0, out
    finally:
        assert await dev.stop() == 0
    code, out = await cli("verify", "--data-dir", str(dev_dir))
    assert code == 0, out
    assert EmbeddedPostgres(dev_dir).postmaster_pid() is None
