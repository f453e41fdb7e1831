"""A real PostgreSQL for the tests.

Uses the server named by the ``PG*`` variables when ``PGHOST`` is set;
otherwise starts a throwaway cluster with ``initdb`` in a temp dir, on a free
loopback port, and removes it afterwards. As root, the cluster runs as the
``postgres`` system user (PostgreSQL refuses to run as root). Its superuser
is ``maildesk``, because Odoo refuses to connect as ``postgres``.

``scripts/run`` keeps its cluster instead: ``ThrowawayCluster(directory=...)``.
"""

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

SUPERUSER = "maildesk"


def free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bin(name):
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if isinstance(found, list):
        found = found[-1] if found else None
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql).")
    return found


class ThrowawayCluster:
    """A cluster in a new temp dir, removed by ``stop``.

    With ``directory`` the cluster is kept there instead: ``initdb`` runs once,
    a later ``start`` reuses the data (or the server, if it is still running,
    whatever its port), and ``stop`` shuts down only a server this object
    started. It then keeps PostgreSQL's durability settings. ``port`` asks
    for a port instead of a free one.
    """

    def __init__(self, directory=None, port=None):
        self.keep = directory
        self.requested_port = port
        self.dir = None
        self.proc_user = None
        self.port = None
        self.started = False

    def _run(self, *cmd, check=True):
        if self.proc_user:
            cmd = ("runuser", "-u", self.proc_user, "--", *cmd)
        return subprocess.run(cmd, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self):
        self.dir = self.keep or tempfile.mkdtemp(prefix="maildesk-pg-")
        os.makedirs(self.dir, exist_ok=True)
        if os.geteuid() == 0:
            self.proc_user = "postgres"
            entry = pwd.getpwnam(self.proc_user)
            os.chmod(self.dir, 0o755)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        data = os.path.join(self.dir, "data")
        if not os.path.exists(os.path.join(data, "PG_VERSION")):
            self._run(_pg_bin("initdb"), "-D", data, "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                      "--locale=C.UTF-8", "--no-sync")
        if self.keep and self._run(_pg_bin("pg_ctl"), "-D", data, "status", check=False).returncode == 0:
            # Still running from an earlier run: line 4 of postmaster.pid is its port.
            with open(os.path.join(data, "postmaster.pid")) as pid_file:
                self.port = int(pid_file.read().splitlines()[3])
            return self._env()
        self.port = self.requested_port or free_port()
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir}"
        if not self.keep:  # disposable data: durability only costs time
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        self._run(_pg_bin("pg_ctl"), "-D", data, "-o", opts, "-l", os.path.join(self.dir, "log"),
                  "-w", "start")
        self.started = True
        return self._env()

    def _env(self):
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": SUPERUSER, "PGDATABASE": "postgres"}

    def stop(self):
        if not self.dir:
            return
        if self.started:
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run(_pg_bin("pg_ctl"), "-D", os.path.join(self.dir, "data"),
                          "-m", "fast" if self.keep else "immediate", "stop")
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        self.started = False


def server_from_env():
    """The PG* settings to use, or None when a throwaway cluster is needed."""
    if not os.environ.get("PGHOST"):
        return None
    return {name: os.environ[name] for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD")
            if os.environ.get(name)}


def wait_ready(env, timeout=30):
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg2.connect(dbname="postgres", **_dsn(env)).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _dsn(env):
    return {
        "host": env.get("PGHOST"),
        "port": env.get("PGPORT", "5432"),
        "user": env.get("PGUSER"),
        "password": env.get("PGPASSWORD"),
    }


def connect(env, dbname, autocommit=False):
    """A psycopg2 connection; transactions run at REPEATABLE READ, as Odoo's cursors do.

    Odoo's ``sql_db.Cursor`` sets ``ISOLATION_LEVEL_REPEATABLE_READ`` on every
    connection (psycopg2 then opens each transaction with ``BEGIN ISOLATION
    LEVEL REPEATABLE READ``), so the engine's SQL is tested under the same
    snapshot rules it meets in production. Autocommit connections are not
    affected.
    """
    import psycopg2
    from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ

    conn = psycopg2.connect(dbname=dbname, **_dsn(env))
    if autocommit:
        conn.autocommit = True
    else:
        conn.set_isolation_level(ISOLATION_LEVEL_REPEATABLE_READ)
    return conn
