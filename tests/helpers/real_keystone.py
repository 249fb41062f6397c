"""A real Keystone (the ``keystone`` package) in a subprocess, for the tests of
auth_strategy keystone against the real thing (tests/integration/test_real_keystone.py).

A temporary directory holds ``keystone.conf`` (SQLite through SQLAlchemy as the SQL
backend: keystone has no PostgreSQL driver here, psycopg2 is not installed; fernet tokens),
the database and the key repositories; ``keystone-manage`` makes the schema and the keys
and bootstraps the admin user, project, roles, region and identity endpoint. Keystone's
public WSGI application is served by werkzeug (threaded; Flask brings it) on a free port of
127.0.0.1. Keystone is never imported in the test process (its deprecation warnings would
be errors there): only HTTP crosses.

``stop()`` and ``start()`` take Keystone down and bring it back on the same port, with the
same database and keys: tokens issued before stay valid.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ADMIN_PASSWORD = "admin-s3cret"
START_DEADLINE = 60.0  # seconds for Keystone to answer GET /v3 after it is spawned

_SERVE = """
import sys
port = int(sys.argv.pop())  # keystone reads sys.argv as its own options
from werkzeug.serving import run_simple
from keystone.server.wsgi import initialize_public_application
run_simple("127.0.0.1", port, initialize_public_application(), threaded=True)
"""

_CONF = """\
[DEFAULT]
debug = false

[database]
connection = sqlite:///{root}/keystone.db

[token]
provider = fernet
expiration = 3600

[fernet_tokens]
key_repository = {root}/fernet-keys
max_active_keys = 3

[fernet_receipts]
key_repository = {root}/fernet-keys

[credential]
key_repository = {root}/credential-keys

[cache]
# Keystone's own in-process cache (devstack uses memcached): a request takes ~10 ms instead
# of ~250 ms; a revocation invalidates it at once (one process, one cache).
enabled = true
backend = dogpile.cache.memory

[identity]
# bcrypt's fewest rounds: password and application credential checks take milliseconds
password_hash_rounds = 4
"""


class KeystoneError(Exception):
    """Keystone answered something other than what the helper asked for."""


@dataclass(frozen=True)
class User:
    name: str
    password: str
    id: str
    project_id: str


@dataclass
class RealKeystone:
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    _admin: str | None = field(default=None, repr=False)
    _roles: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ the process

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OS_KEYSTONE_CONFIG_DIR"] = str(self.root)
        env["OS_KEYSTONE_CONFIG_FILES"] = "keystone.conf"
        env["PYTHONWARNINGS"] = "ignore"
        return env

    def manage(self, *args: str) -> None:
        cmd = [_manage(), "--config-file", str(self.root / "keystone.conf"), *args]
        done = subprocess.run(cmd, env=self._env(), capture_output=True, timeout=120)
        if done.returncode != 0:
            raise KeystoneError(f"keystone-manage {args[0]}: {done.stderr.decode()[-2000:]}")

    def start(self) -> None:
        assert self.process is None, "already running"
        log = (self.root / "keystone.log").open("ab")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _SERVE, str(self.port)],
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if self.process.poll() is not None:
                tail = (self.root / "keystone.log").read_text(errors="replace")[-3000:]
                self.process = None
                raise KeystoneError(f"keystone exited at start:\n{tail}")
            try:
                with urllib.request.urlopen(self.url + "/v3", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise KeystoneError(f"keystone did not answer GET /v3 in {START_DEADLINE}s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Keystone down: the process is ended (SIGTERM, then SIGKILL) and waited for."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    # ------------------------------------------------------------ the API

    def request(
        self, method: str, path: str, token: str | None, body: Any = None, **headers: str
    ) -> tuple[int, Any, dict[str, str]]:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **headers}
        if token is not None:
            hdrs["X-Auth-Token"] = token
        req = urllib.request.Request(self.url + path, data=data, headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw, status, got = resp.read(), resp.status, dict(resp.headers)
        except urllib.error.HTTPError as err:
            raw, status, got = err.read(), err.code, dict(err.headers)
        return status, (json.loads(raw) if raw else None), got

    def _expect(self, answer: tuple[int, Any, dict[str, str]], *ok: int) -> Any:
        status, body, _ = answer
        if status not in ok:
            raise KeystoneError(f"keystone answered {status}: {body}")
        return body

    def admin_token(self) -> str:
        if self._admin is None:
            self._admin = self.password_token("admin", ADMIN_PASSWORD, project_name="admin")
        return self._admin

    def password_token(
        self,
        name: str,
        password: str,
        *,
        project_id: str | None = None,
        project_name: str | None = None,
    ) -> str:
        project = {"id": project_id} if project_id else {"name": project_name}
        if project_name:
            project["domain"] = {"id": "default"}
        auth = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": name, "password": password, "domain": {"id": "default"}}
                    },
                },
                "scope": {"project": project},
            }
        }
        status, body, headers = self.request("POST", "/v3/auth/tokens", None, auth)
        if status != 201:
            raise KeystoneError(f"token for {name} answered {status}: {body}")
        return headers["X-Subject-Token"]

    def token(self, user: User) -> str:
        """A fresh project-scoped token of ``user`` (its project), valid for an hour."""
        return self.password_token(user.name, user.password, project_id=user.project_id)

    def short_lived_token(self, user: User, seconds: float) -> tuple[str, datetime]:
        """A token of ``user`` that expires in ``seconds``: Keystone caps a token issued from
        an application credential at the credential's expiry (CVE-2022-2447), so this is
        a real user token with a real expiry, without shortening every token's lifetime."""
        own = self.token(user)
        expires = datetime.now(UTC) + timedelta(seconds=seconds)
        body = self._expect(
            self.request(
                "POST",
                f"/v3/users/{user.id}/application_credentials",
                own,
                {
                    "application_credential": {
                        "name": f"short-{time.time_ns()}",
                        "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%f"),
                    }
                },
            ),
            201,
        )
        cred = body["application_credential"]
        auth = {
            "auth": {
                "identity": {
                    "methods": ["application_credential"],
                    "application_credential": {"id": cred["id"], "secret": cred["secret"]},
                }
            }
        }
        status, answer, headers = self.request("POST", "/v3/auth/tokens", None, auth)
        if status != 201:
            raise KeystoneError(f"application credential token answered {status}: {answer}")
        token_expires = datetime.fromisoformat(answer["token"]["expires_at"].replace("Z", "+00:00"))
        return headers["X-Subject-Token"], token_expires

    def revoke(self, token: str) -> None:
        """``DELETE /v3/auth/tokens``: the token is revoked at once (by its audit id)."""
        self._expect(
            self.request(
                "DELETE", "/v3/auth/tokens", self.admin_token(), **{"X-Subject-Token": token}
            ),
            204,
        )

    def validate(self, token: str) -> int:
        """What Keystone itself says of ``token`` (200 valid, 404 not)."""
        status, _, _ = self.request(
            "GET", "/v3/auth/tokens", self.admin_token(), **{"X-Subject-Token": token}
        )
        return status

    def role_id(self, name: str) -> str:
        """The id of the role ``name`` (bootstrap made admin, manager, member, reader and
        service); the roles are listed once."""
        if not self._roles:
            body = self._expect(self.request("GET", "/v3/roles", self.admin_token()), 200)
            self._roles.update({str(r["name"]): str(r["id"]) for r in body["roles"]})
        return self._roles[name]

    def project(self, name: str) -> str:
        body = self._expect(
            self.request(
                "POST",
                "/v3/projects",
                self.admin_token(),
                {"project": {"name": name, "domain_id": "default"}},
            ),
            201,
        )
        return str(body["project"]["id"])

    def user(self, name: str, project_id: str, roles: list[str]) -> User:
        password = f"{name}-pw"
        body = self._expect(
            self.request(
                "POST",
                "/v3/users",
                self.admin_token(),
                {
                    "user": {
                        "name": name,
                        "password": password,
                        "domain_id": "default",
                        "default_project_id": project_id,
                    }
                },
            ),
            201,
        )
        uid = str(body["user"]["id"])
        for role in roles:
            path = f"/v3/projects/{project_id}/users/{uid}/roles/{self.role_id(role)}"
            self._expect(self.request("PUT", path, self.admin_token()), 204)
        return User(name, password, uid, project_id)


def _manage() -> str:
    found = Path(sys.executable).with_name("keystone-manage")
    if found.exists():
        return str(found)
    which = shutil.which("keystone-manage")
    if which is None:
        raise KeystoneError("keystone-manage not found: pip install 'keystone>=30,<31'")
    return which


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def real_keystone() -> Iterator[RealKeystone]:
    """A bootstrapped Keystone, running; stopped and its directory removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="cbt-keystone-", dir="/tmp"))
    keystone = RealKeystone(root, free_port())
    try:
        (root / "keystone.conf").write_text(_CONF.format(root=root))
        for keys in ("fernet-keys", "credential-keys"):
            (root / keys).mkdir(mode=0o700)
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        keystone.manage("db_sync")
        owner = ("--keystone-user", user, "--keystone-group", group)
        keystone.manage("fernet_setup", *owner)
        keystone.manage("credential_setup", *owner)
        keystone.manage(
            "bootstrap",
            "--bootstrap-password",
            ADMIN_PASSWORD,
            "--bootstrap-admin-url",
            f"{keystone.url}/v3",
            "--bootstrap-public-url",
            f"{keystone.url}/v3",
            "--bootstrap-internal-url",
            f"{keystone.url}/v3",
            "--bootstrap-region-id",
            "RegionOne",
        )
        keystone.start()
        yield keystone
    finally:
        keystone.stop()
        shutil.rmtree(root, ignore_errors=True)
