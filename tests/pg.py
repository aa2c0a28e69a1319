"""A real, throw-away PostgreSQL server on loopback for the shared-study tests of ``emodistill tune``.

It uses Debian's server binaries (``/usr/lib/postgresql/<version>/bin``, installed by
``scripts/test-postgres.sh`` in ``make test``): ``initdb`` into a fresh temporary directory, ``pg_ctl start``
on 127.0.0.1 and a free port (the Unix socket in the same directory, no system service touched),
``createdb``, and ``pg_ctl stop`` afterwards, also when a test fails. initdb refuses to run as root, so
under root every server command runs as the ``postgres`` user (``runuser``) and the directory is theirs.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REQUIRE_ENV = "EMODISTILL_REQUIRE_POSTGRES"


def server_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
                   if p.split("/")[4].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def unavailable_reason() -> str | None:
    """Why a server cannot be started here (None: it can)."""
    if server_bindir() is None:
        return "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb); run scripts/test-postgres.sh as root"
    if os.geteuid() == 0 and (shutil.which("runuser") is None or _uid("postgres") is None):
        return "running as root without runuser or a 'postgres' user to run initdb as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg (3) is not installed (pip install 'emodistill[postgres]')"
    return None


def _uid(user: str) -> int | None:
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server(dbname: str = "emodistill") -> Iterator[str]:
    """Start a server, create ``dbname``, yield its SQLAlchemy URL, stop and delete the server."""
    bindir = server_bindir()
    assert bindir is not None, unavailable_reason()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix="emodistill-pg-"))  # in /tmp, not under pytest's 0700 root dirs
    data, log = base / "data", base / "server.log"
    if as_root:
        os.chown(base, _uid("postgres"), -1)

    def run(*cmd: str) -> None:
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True, timeout=120)

    port = _free_port()
    started = False
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        # fsync off: a test server that is thrown away needs no durability
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
            f"-h 127.0.0.1 -p {port} -k {base} -F", "start")
        started = True
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", dbname)
        yield f"postgresql://postgres@127.0.0.1:{port}/{dbname}"
    except subprocess.CalledProcessError as e:
        tail = log.read_text()[-2000:] if log.is_file() else ""
        raise RuntimeError(f"PostgreSQL test server: {' '.join(e.cmd)} failed: {e.stderr}\n{tail}") from e
    finally:
        if started:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
