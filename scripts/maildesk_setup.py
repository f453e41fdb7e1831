"""Set-up shared by ``scripts/test`` and ``scripts/run``: standard library only.

- system packages from Debian (as root): Dovecot, PostgreSQL, libpq headers,
  and Chromium for the Odoo tours;
- Odoo 18 from ``$ODOO_PATH`` or /opt/odoo18;
- one virtualenv with Odoo's requirements, ours and the constraints that let
  them live together, rebuilt only when one of those files changes;
- PostgreSQL from the ``PG*`` variables, or a throwaway cluster.
"""

import contextlib
import getpass
import glob
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ODOO = Path("/opt/odoo18")
DEFAULT_VENV = Path.home() / ".cache" / "maildesk" / "venv"

# Odoo requirements we leave out: they need system headers and mail needs
# none of them (LDAP, USB and serial devices), or constraints.txt pins them.
_ODOO_REQUIREMENTS_DROPPED = ("python-ldap", "pyusb", "pyserial", "cryptography", "pyopenssl", "urllib3")
_ODOO_REQUIREMENTS_ADDED = ("cryptography", "pyOpenSSL", "urllib3")  # versions from constraints.txt


def log(message):
    print(f"==> {message}", flush=True)


def free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------

# What odoo.tests.common._find_executable looks for on Linux, in its order.
_CHROME_NAMES = ("google-chrome", "chromium", "chromium-browser", "google-chrome-stable")


def _have_initdb():
    return bool(shutil.which("initdb") or glob.glob("/usr/lib/postgresql/*/bin/initdb"))


def ensure_system_packages(need_postgres=True, need_browser=False):
    wanted = {
        "dovecot-imapd": Path("/usr/sbin/dovecot").exists(),
        "openssl": bool(shutil.which("openssl")),
        "libpq-dev": bool(shutil.which("pg_config")),  # psycopg2 builds against it
        "gcc": bool(shutil.which("gcc")),
        "postgresql-client": bool(shutil.which("psql") and shutil.which("dropdb")),
    }
    if need_browser:
        # The Odoo tours run in it; odoo.tests.common looks for these names on PATH.
        wanted["chromium"] = any(shutil.which(name) for name in _CHROME_NAMES)
    if need_postgres:
        wanted["postgresql"] = _have_initdb()
    missing = sorted(name for name, present in wanted.items() if not present)
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log(f"WARNING: missing system packages {', '.join(missing)}; install them (Debian: apt-get install "
            f"{' '.join(missing)}). Tests that need them will be skipped or fail.")
        return
    log(f"installing Debian packages: {', '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)
    # The packages start system services we do not use; the tests run their own.
    for service in ("dovecot", "postgresql"):
        subprocess.run(["service", service, "stop"], check=False, capture_output=True)


# ---------------------------------------------------------------------------
# Odoo
# ---------------------------------------------------------------------------

def _odoo_major(path):
    release = path / "odoo" / "release.py"
    if not (path / "odoo-bin").exists() or not release.exists():
        return None
    match = re.search(r"version_info\s*=\s*\(\s*(\d+)", release.read_text())
    return int(match.group(1)) if match else None


def find_odoo():
    """The Odoo 18 source tree to test against, or None (said loudly)."""
    explicit = os.environ.get("ODOO_PATH")
    path = Path(explicit) if explicit else DEFAULT_ODOO
    major = _odoo_major(path)
    if major == 18:
        log(f"Odoo 18 found at {path}")
        return path
    if explicit:
        log(f"WARNING: ODOO_PATH={explicit} is not an Odoo 18 source tree (found version {major})")
    return None


def odoo_requirements(odoo):
    """Odoo's requirements.txt less what we drop; written next to the venv."""
    kept = []
    for line in (odoo / "requirements.txt").read_text().splitlines():
        name = re.split(r"[\s=<>;~!\[]", line.strip(), maxsplit=1)[0].lower()
        if name and not name.startswith("#") and name not in _ODOO_REQUIREMENTS_DROPPED:
            kept.append(line)
    return "\n".join([*kept, *_ODOO_REQUIREMENTS_ADDED]) + "\n"


# ---------------------------------------------------------------------------
# virtualenv
# ---------------------------------------------------------------------------

class Venv:
    def __init__(self, path):
        self.path = Path(path)
        self.python = str(self.path / "bin" / "python")

    def bin(self, name):
        return str(self.path / "bin" / name)


def ensure_venv(odoo=None, test=False):
    """The virtualenv, installed for ``odoo`` (or none) and, with ``test``, the test tools.

    A stamp records what was installed, so a second run installs nothing; a
    venv installed for the tests also serves ``scripts/run``.
    """
    venv = Venv(os.environ.get("MAILDESK_VENV") or DEFAULT_VENV)
    base = [REPO / "requirements.txt", REPO / "constraints.txt"]
    odoo_reqs = odoo_requirements(odoo) if odoo else ""
    digest = hashlib.sha256(
        "".join(f.read_text() for f in base).encode() + odoo_reqs.encode() + sys.version.encode()
    ).hexdigest()
    test_digest = hashlib.sha256((REPO / "requirements-test.txt").read_bytes()).hexdigest()
    wanted = {digest} | ({f"test:{test_digest}"} if test else set())
    stamp = venv.path / ".maildesk-stamp"
    installed = set(stamp.read_text().split()) if stamp.exists() else set()
    if Path(venv.python).exists() and digest in installed and wanted <= installed:
        log(f"virtualenv up to date: {venv.path}")
        return venv
    if digest not in installed:
        installed = set()  # the base changed: what the stamp says no longer holds
    if not Path(venv.python).exists():
        log(f"creating virtualenv {venv.path}")
        venv.path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv.path)], check=True)
    constraints = str(REPO / "constraints.txt")
    # PIP_CONSTRAINT, unlike -c, also reaches the isolated build environments
    # of sdists, which is where setuptools<75 matters.
    env = {**os.environ, "PIP_CONSTRAINT": constraints, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip = [venv.python, "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "setuptools<75", "wheel"], check=True, env=env)
    args = ["-r", str(REPO / "requirements.txt")]
    if test:
        args += ["-r", str(REPO / "requirements-test.txt")]
    if odoo:
        odoo_file = venv.path / "odoo-requirements.txt"
        odoo_file.write_text(odoo_reqs)
        args += ["-r", str(odoo_file)]
    log("installing Python packages (first run only; a few minutes)")
    subprocess.run([*pip, *args, "-c", constraints], check=True, env=env)
    stamp.write_text("\n".join(sorted(installed | wanted)))
    return venv


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def postgres():
    """PG* settings for a reachable server: the caller's, or a throwaway cluster."""
    if os.environ.get("PGHOST"):
        pg = {name: os.environ[name] for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD")
              if os.environ.get(name)}
        pg.setdefault("PGUSER", getpass.getuser())
        yield pg
        return
    sys.path.insert(0, str(REPO))
    from tests.harness.postgres import ThrowawayCluster

    cluster = ThrowawayCluster()
    log("starting a throwaway PostgreSQL cluster")
    pg = cluster.start()
    try:
        yield pg
    finally:
        cluster.stop()
