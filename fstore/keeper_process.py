"""The CRL keeper as a process: start it detached, find it, stop it.

What the keeper does is :mod:`fstore.crlkeeper`; this module only knows how it runs:
``python -m fstore.crlkeeper --home DIR --daemon`` forks into the background, holds
``server/crlkeeper.lock`` (flock) for its whole life and names itself in
``server/crlkeeper.pid``; its output goes to ``server/crlkeeper.log``. The server
(:mod:`fstore.server`) starts and stops it with these functions.

Example::

    pid = start_keeper(home)
    keeper_status(home)     # {"running": True, "pid": ..., "log_file": ..., "last_log": ...}
    stop_keeper(home)
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from fstore.errors import ServerError
from fstore.files import write_atomic
from fstore.home import FstoreHome


def try_lock(path: Path) -> IO[str] | None:
    """The lock file, held (flock) by this process; None when another holds it."""
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def keeper_status(home: FstoreHome) -> dict[str, Any]:
    """Is a keeper running for this home (it holds the lock file), its pid and last log line."""
    running = False
    if home.keeper_lock_file.exists():
        handle = try_lock(home.keeper_lock_file)
        running = handle is None
        if handle is not None:
            handle.close()
    pid = None
    if running and home.keeper_pid_file.exists():
        text = home.keeper_pid_file.read_text().strip()
        pid = int(text) if text.isdigit() else None
    last = None
    if home.keeper_log_file.exists():
        with home.keeper_log_file.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            lines = fh.read().decode(errors="replace").splitlines()
        last = lines[-1] if lines else None
    return {"running": running, "pid": pid, "log_file": str(home.keeper_log_file), "last_log": last}


def _command(home: FstoreHome) -> list[str]:
    return [sys.executable, "-m", "fstore.crlkeeper", "--home", str(home.root)]


def start_keeper(home: FstoreHome, timeout: float = 60.0) -> int:
    """Start the home's keeper detached, unless one runs; returns its pid."""
    state = keeper_status(home)
    if state["running"] and state["pid"]:
        return state["pid"]
    env = os.environ.copy()
    package_root = str(Path(__file__).resolve().parent.parent)  # the keeper runs this very code
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    grace = env.get("FSTORE_CRL_KEEPER_ORPHAN_GRACE")
    args = [*_command(home), "--daemon"] + (["--orphan-grace", grace] if grace else [])
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd="/")
    if result.returncode != 0:
        raise ServerError(
            f"the CRL keeper did not start: {(result.stderr or result.stdout).strip()} "
            f"(log: {home.keeper_log_file})"
        )
    words = result.stdout.split()
    if words and words[-1].isdigit():
        return int(words[-1])
    return keeper_status(home)["pid"] or 0


def stop_keeper(home: FstoreHome, timeout: float = 15.0) -> bool:
    """Stop the home's keeper (SIGTERM, then SIGKILL); returns False when none ran."""
    state = keeper_status(home)
    if not state["running"]:
        home.keeper_pid_file.unlink(missing_ok=True)
        return False
    pid = state["pid"]
    if pid is None or not _is_keeper_process(pid, home):
        raise ServerError(
            f"a CRL keeper holds {home.keeper_lock_file} but {home.keeper_pid_file} does not name it "
            "(another host or container?): stop it there"
        )
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and keeper_status(home)["running"]:
        time.sleep(0.05)
    if keeper_status(home)["running"]:
        os.kill(pid, signal.SIGKILL)
        while keeper_status(home)["running"]:
            time.sleep(0.05)
    home.keeper_pid_file.unlink(missing_ok=True)
    return True


def _is_keeper_process(pid: int, home: FstoreHome) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"fstore.crlkeeper" in args and str(home.root).encode() in args


def daemonize(home: FstoreHome) -> IO[str] | None:
    """Fork into the background; the first process reports the keeper's pid and exits.

    Returns the lock handle in the keeper (None when another keeper holds it).
    """
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            message = pipe.read().strip()
        ok = message.startswith(("running", "already"))
        print(message, file=sys.stdout if ok else sys.stderr)
        os._exit(0 if ok else 1)
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    report = os.fdopen(write_end, "w")
    try:
        home.server_dir.mkdir(parents=True, exist_ok=True)
        lock = try_lock(home.keeper_lock_file)
        if lock is None:
            report.write(f"already {keeper_status(home)['pid']}\n")
            return None
        fd = os.open(home.keeper_log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(devnull)
        write_pid(home)
        report.write(f"running {os.getpid()}\n")
        return lock
    except Exception as exc:  # noqa: BLE001 -- the starter prints it
        report.write(f"error: {exc}\n")
        raise SystemExit(1) from exc
    finally:
        report.close()


def write_pid(home: FstoreHome) -> None:
    """Name this process in the keeper's pid file."""
    write_atomic(home.keeper_pid_file, f"{os.getpid()}\n")


__all__ = ["daemonize", "keeper_status", "start_keeper", "stop_keeper", "try_lock", "write_pid"]
