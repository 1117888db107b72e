"""The CRL keeper: the operator's small long-running process that makes revocations
done in SQL bite, and keeps the CRL from expiring.

SQL paths that end a membership or a project (``remove_member``, ``delete_project``,
``block_user``) only mark certificate rows revoked in ``fstore.certificates`` and
``NOTIFY fstore_certificates``: the database holds no CA key. The keeper LISTENs on
that channel and, on each notification and at least every minute, in one
:func:`fstore.registry.publication_lock`:

1. marks the catalog's revoked-but-unpublished serials revoked in the registry;
2. revokes orphans: unrevoked user/application certificates whose role is neither
   ``fstore_admin`` nor a member's login role (older than a short grace, so that a
   member being added is not caught between its commit and its certificate);
3. publishes what the server's CRL does not list yet (:func:`fstore.certificates.publish`:
   CRLs re-signed, server reloaded, each certificate proven refused, its sessions
   ended, ``crl_published_at`` set, after which the role name may be given out again);
4. renews the CRLs when less than :data:`RENEW_WHEN_LEFT` of their 7 days is left.

``fstore server start`` starts it detached (``server/crlkeeper.pid``, ``.lock``,
``.log``); ``fstore server stop`` stops it. In Docker it runs in the foreground in its
own container (``python -m fstore.crlkeeper --home /fstore-home``).

Running it as a process (detached, its lock and pid files) is :mod:`fstore.keeper_process`.

Example::

    pid = start_keeper(home)
    keeper_status(home)     # {"running": True, "pid": ..., "log_file": ..., "last_log": ...}
    stop_keeper(home)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from fstore import certificates, server
from fstore.connection import connect_operator
from fstore.crl import CLOCK_SKEW, crl_expiry, export_crl, resign_crls
from fstore.errors import FstoreError
from fstore.home import FstoreHome
from fstore.keeper_process import daemonize, keeper_status, start_keeper, stop_keeper, try_lock, write_pid
from fstore.registry import CertificateRecord, now, publication_lock, registry, sync_catalog
from fstore.replica_nodes import reload_replicas
from fstore.roles import ADMIN_ROLE

CHANNEL = "fstore_certificates"
TICK = dt.timedelta(minutes=1)
RENEW_WHEN_LEFT = dt.timedelta(days=6)  # 7-day CRLs: renewed about daily
ORPHAN_GRACE = dt.timedelta(seconds=10)
_PENDING = (
    "select serial::text, role_name, kind, app_id, not_before, not_after, revoked_at "
    "from fstore.certificates where revoked_at is not null and crl_published_at is null"
)


def log(message: str) -> None:
    """One line on the keeper's output (its log file when detached)."""
    print(f"{now().isoformat(timespec='seconds')} {message}", flush=True)


@dataclass
class CycleResult:
    """What one pass of the keeper did."""

    from_catalog: list[str] = field(default_factory=list)  # serials revoked in SQL, now in the registry
    orphans: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    terminated: int = 0
    renewed: bool = False


def _from_catalog(records: list[CertificateRecord], rows: list[tuple[Any, ...]]) -> list[str]:
    """Mark the catalog's revoked serials revoked in the registry (adding unknown ones)."""
    by_serial = {r.serial: r for r in records}
    marked = []
    for serial, role, kind, app_id, not_before, not_after, revoked_at in rows:
        record = by_serial.get(serial)
        if record is None:  # known to the database only: list it in the CRL all the same
            record = CertificateRecord(
                serial=serial, subject=f"CN={role}", role=role, kind=kind, app_id=app_id,
                not_before=not_before.isoformat(), not_after=not_after.isoformat(),
            )
            records.append(record)
        if not record.revoked_at:
            record.revoked_at = revoked_at.isoformat()
            marked.append(serial)
    return marked


def _issued_at(record: CertificateRecord) -> dt.datetime:
    if record.issued_at:
        return dt.datetime.fromisoformat(record.issued_at)
    return dt.datetime.fromisoformat(record.not_before) + CLOCK_SKEW


def _orphans(records: list[CertificateRecord], members: set[str], grace: dt.timedelta) -> list[str]:
    """Revoke unrevoked client certificates whose role is no longer anyone's."""
    at = now()
    revoked = []
    for record in records:
        if record.revoked_at or record.kind == "service" or record.role == ADMIN_ROLE:
            continue
        if record.role in members or record.expires <= at or at - _issued_at(record) < grace:
            continue
        record.revoked_at = at.isoformat()
        revoked.append(record.serial)
    return revoked


def run_cycle(home: FstoreHome, conn: psycopg.Connection[Any], grace: dt.timedelta = ORPHAN_GRACE) -> CycleResult:
    """One pass: catalog revocations and orphans into the registry, publish, renew."""
    result = CycleResult()
    with publication_lock(home):
        rows = conn.execute(_PENDING).fetchall()
        with registry(home, write=True) as records:  # registry first, then members:
            result.from_catalog = _from_catalog(records, rows)  # a certificate issued
            members = {m for (m,) in conn.execute("select role_name from fstore.members")}
            result.orphans = _orphans(records, members, grace)  # before now has its member
            at = now()
            candidates = [r for r in records if r.revoked_at and r.kind != "service" and r.expires > at]
        published = {s for (s,) in conn.execute(
            "select serial::text from fstore.certificates where serial = any(%s::numeric[]) "
            "and crl_published_at is not null", ([int(r.serial) for r in candidates],))}
        batch = [r for r in candidates if r.serial not in published]
        if batch:
            result.terminated = certificates.publish(home, batch)
            result.published = [r.serial for r in batch]
            log(f"published {len(batch)} revocation(s) in the CRL ({len(result.from_catalog)} from SQL, "
                f"{len(result.orphans)} orphan(s)), proven refused, {result.terminated} session(s) ended: "
                + ", ".join(f"{r.role}#{r.serial}" for r in batch[:20]))
        result.renewed = renew_if_due(home, reachable=True)
    return result


def renew_if_due(home: FstoreHome, *, reachable: bool) -> bool:
    """Re-sign the CRLs when under :data:`RENEW_WHEN_LEFT` is left (or the exported copy
    is stale) and reload the server; returns whether it renewed."""
    with publication_lock(home):
        expiry = crl_expiry(home)
        due = expiry is None or expiry - now() < RENEW_WHEN_LEFT
        if due:
            try:
                next_update = resign_crls(home)
            except FstoreError as exc:
                log(f"ERROR could not renew the CRL (next update {expiry}): {exc}")
                raise
            log(f"renewed the CRLs; next update {next_update.isoformat(timespec='seconds')}")
        exported = export_crl(home)
        if (due or exported) and reachable:
            server.reload(home)  # the read replicas too (fstore.replica_nodes.reload_replicas)
        elif due or exported:  # the primary is down: its replicas still serve, with the renewed CRL
            reload_replicas(home)
        return due


def _still_ours(home: FstoreHome) -> bool:
    try:
        return home.keeper_pid_file.read_text().strip() == str(os.getpid())
    except OSError:
        return False


def serve(home: FstoreHome, grace: dt.timedelta = ORPHAN_GRACE, tick: dt.timedelta = TICK) -> None:
    """Run until SIGTERM (or until the pid file no longer names this process)."""
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    log(f"CRL keeper {os.getpid()} for {home.root} started")
    last_error = ""
    while not stopping and _still_ours(home):
        try:
            renew_if_due(home, reachable=server.operator_reachable(home))
            with connect_operator(home, autocommit=True, connect_timeout=5) as conn:
                woken: list[bool] = []  # notifications that come during a cycle wait in psycopg's backlog
                conn.execute(f"listen {CHANNEL}")
                sync_catalog(home, conn)
                log(f"listening on {CHANNEL}")
                last_error, due = "", 0.0
                while not stopping and _still_ours(home):
                    if woken or time.monotonic() >= due:
                        woken.clear()
                        run_cycle(home, conn, grace)
                        due = time.monotonic() + tick.total_seconds()
                    for _ in conn.notifies(timeout=1.0, stop_after=1):
                        woken.append(True)
        except (psycopg.Error, FstoreError, OSError) as exc:
            text = f"{type(exc).__name__}: {str(exc).strip()}"
            if text != last_error:
                log(f"ERROR {text} (retrying)")
                last_error = text
            for _ in range(5):
                if stopping:
                    break
                time.sleep(1)
    log(f"CRL keeper {os.getpid()} stopped")


def main(argv: list[str] | None = None) -> int:
    """``python -m fstore.crlkeeper --home DIR [--daemon]``."""
    parser = argparse.ArgumentParser(prog="fstore.crlkeeper", description=__doc__.split("\n")[0])
    parser.add_argument("--home", default=None, help="fstore home (default $FSTORE_HOME or ~/.fstore)")
    parser.add_argument("--daemon", action="store_true", help="detach; print the keeper's pid")
    parser.add_argument("--orphan-grace", type=float, default=ORPHAN_GRACE.total_seconds(),
                        help="seconds a new certificate may wait for its member row")
    args = parser.parse_args(argv)
    home = FstoreHome.resolve(args.home)
    grace = dt.timedelta(seconds=args.orphan_grace)
    if args.daemon:
        lock = daemonize(home)
        if lock is None:
            return 0
    else:
        home.server_dir.mkdir(parents=True, exist_ok=True)
        lock = try_lock(home.keeper_lock_file)
        if lock is None:
            print(f"a CRL keeper already runs for {home.root}", file=sys.stderr)
            return 1
        write_pid(home)
    try:
        serve(home, grace)
    finally:
        if _still_ours(home):
            home.keeper_pid_file.unlink(missing_ok=True)
        lock.close()
    return 0


__all__ = ["CycleResult", "keeper_status", "main", "renew_if_due", "run_cycle", "serve", "start_keeper",
           "stop_keeper"]


if __name__ == "__main__":
    sys.exit(main())
