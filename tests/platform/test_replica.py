"""Read replicas (fstore.replica): a streaming hot standby of the session's server, TLS-only
with the primary's certificate rules, read-only, with the primary's RLS, and reached by
revocations at once. Every case logs in with the actor's own certificate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from fstore import certificates, pki, policies, projects, replica
from fstore.cli import main
from fstore.connection import connect_operator, material_for, open_psycopg
from fstore.home import FstoreHome
from tests.conftest import unique
from tests.retrieval.conftest import commit_rows, create_group

UTC = dt.timezone.utc
ACTIVITY = {"account_id": "bigint", "event_time": "timestamptz", "amount": "double precision"}
LAG_TIMEOUT = 60.0  # generous: a deadline for polling, not a threshold


def on_replica(rep: replica.Replica, home: FstoreHome, who: str, **overrides: Any) -> psycopg.Connection[Any]:
    """Log in to the replica as ``who`` with its certificate (verify-full, as on the primary)."""
    material = dataclasses.replace(material_for(home, who), port=rep.port, home=None, **overrides)
    return open_psycopg(material, autocommit=True, connect_timeout=5)


def poll(conn: psycopg.Connection[Any], query: str, wanted: Any, timeout: float = LAG_TIMEOUT) -> float:
    """Seconds until ``query`` on ``conn`` returns ``wanted`` (fails after ``timeout``)."""
    start = time.monotonic()
    while True:
        if conn.execute(query).fetchone()[0] == wanted:
            return time.monotonic() - start
        assert time.monotonic() - start < timeout, f"{query} never returned {wanted!r} on the replica"
        time.sleep(0.002)


def test_replica_is_a_streaming_tls_only_standby(home: FstoreHome, rep: replica.Replica) -> None:
    [status] = [r for r in replica.replica_status(home) if r["name"] == rep.name]
    assert status["running"] and status["in_recovery"] and status["state"] == "streaming"
    assert (rep.home.data_dir / "standby.signal").exists()
    for name in ("pg_hba.conf", "pg_ident.conf"):  # the primary's certificate rules
        assert (rep.home.data_dir / name).read_text() == (home.data_dir / name).read_text()
    with connect_operator(rep.home) as op:
        assert op.execute("show ssl").fetchone()[0] == "on"
        assert op.execute("show ssl_crl_file").fetchone()[0] == str(home.crl_file)
        assert op.execute("select pg_is_in_recovery()").fetchone()[0] is True
        conninfo = op.execute("show primary_conninfo").fetchone()[0]
    assert "sslmode=verify-full" in conninfo and "password" not in conninfo
    assert f"user={replica.REPLICATOR_ROLE}" in conninfo
    with connect_operator(home) as op:
        assert op.execute("select rolpassword is null, rolreplication, rolsuper from pg_authid where rolname = %s",
                          (replica.REPLICATOR_ROLE,)).fetchone() == (True, True, False)
    with on_replica(rep, home, "fstore_admin") as admin:
        assert admin.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone()[0] is True


def test_replica_refuses_logins_without_a_valid_certificate(home: FstoreHome, rep: replica.Replica,
                                                           make_project: Any) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    bob = a.role("bob")
    with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects connection .* no encryption"):
        psycopg.connect(host="localhost", port=rep.port, dbname="fstore", user=bob, sslmode="disable",
                        connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="certificate"):  # TLS, but no client certificate
        psycopg.connect(host="localhost", port=rep.port, dbname="fstore", user=bob, sslmode="verify-full",
                        sslrootcert=str(home.root_ca_cert), sslcert="/nonexistent", sslkey="/nonexistent",
                        connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="certificate authentication failed"):
        on_replica(rep, home, a.role("alice"), role=bob)  # alice's certificate, bob's name
    with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects"):  # the superuser never over TCP
        on_replica(rep, home, "fstore_admin", role="postgres")
    with on_replica(rep, home, bob) as conn:  # the allowed counterpart
        assert conn.execute("select session_user").fetchone()[0] == bob


def test_replication_takes_the_replicator_certificate_only(home: FstoreHome, rep: replica.Replica,
                                                          make_project: Any) -> None:
    a = make_project(owner="alice")
    alice = material_for(home, a.role("alice"))
    with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry for replication connection"):
        open_psycopg(dataclasses.replace(alice, home=None, dsn=alice.conninfo() + " replication=true"),
                     connect_timeout=5)
    tls = rep.home.server_tls_dir
    replicator = dataclasses.replace(alice, role=replica.REPLICATOR_ROLE, sslcert=tls / "replicator.crt",
                                     sslkey=tls / "replicator.key", home=None)
    with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects"):  # it may not read the database
        open_psycopg(replicator, connect_timeout=5)
    with open_psycopg(dataclasses.replace(replicator, dsn=replicator.conninfo() + " replication=true"),
                      connect_timeout=5, autocommit=True) as conn:  # the allowed counterpart: replication
        assert conn.execute("IDENTIFY_SYSTEM").fetchone()[0]


def test_a_commit_on_the_primary_is_visible_on_the_replica(home: FstoreHome, rep: replica.Replica,
                                                          make_project: Any) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    with a.connect("alice") as alice:
        group = create_group(alice, a.name, "activity", ACTIVITY, ["account_id"], online=True)
        with on_replica(rep, home, a.role("bob")) as bob:
            table = f"{a.name}.activity__v1"
            poll(bob, f"select to_regclass('{table}') is not null", True)
            started = time.monotonic()
            commit_rows(alice, group, [(i, dt.datetime.now(UTC), i * 1.5) for i in range(1, 101)])
            committed = time.monotonic() - started
            lag = poll(bob, f"select count(*) from {table}", 100)
            assert bob.execute(f"select sum(amount) from {table}__online").fetchone()[0] == sum(
                i * 1.5 for i in range(1, 101))
    replayed = replica.wait_replayed(home)
    [status] = [r for r in replica.replica_status(home) if r["name"] == rep.name]
    print(json.dumps({"commit_s": round(committed, 4), "visible_on_replica_after_s": round(lag, 4),
                      "wait_replayed_s": round(replayed, 4), "replay_lag_s": status["replay_lag_s"],
                      "lag_bytes": status["lag_bytes"]}))


def test_a_data_scientist_sees_on_the_replica_what_rls_lets_him(home: FstoreHome, rep: replica.Replica,
                                                               make_project: Any) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    declared = [policies.RowPolicy("consented", "accounts", ("data_scientist",), "consent")]
    with a.connect("alice") as alice:
        policies.apply_policies(alice, a.name, declared)
        alice.execute(f"set role {a.name}__owner")
        alice.execute(f"create table {a.name}.accounts (id int primary key, consent boolean)")
        alice.execute("reset role")
        alice.execute(f"insert into {a.name}.accounts select g, g % 2 = 0 from generate_series(1, 10) g")
    replica.wait_replayed(home)
    query = f"select count(*), count(*) filter (where not consent) from {a.name}.accounts"
    with a.connect("bob") as bob_primary, on_replica(rep, home, a.role("bob")) as bob:
        assert bob.execute(query).fetchone() == bob_primary.execute(query).fetchone() == (5, 0)
        bob.execute("set row_security = off")  # no way around the policy on the replica either
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            bob.execute(query)
    with on_replica(rep, home, a.role("alice")) as alice:  # the allowed counterpart: the Data Owner sees all
        assert alice.execute(query).fetchone() == (10, 5)
    outsider = make_project(owner="mallory")
    with on_replica(rep, home, outsider.role("mallory")) as mallory:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            mallory.execute(query)


def test_nobody_writes_on_the_replica(home: FstoreHome, rep: replica.Replica, make_project: Any) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    with a.connect("alice") as alice:
        group = create_group(alice, a.name, "activity", ACTIVITY, ["account_id"], online=True)
    replica.wait_replayed(home)
    with on_replica(rep, home, a.role("alice")) as alice:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            commit_rows(alice, group, [(1, dt.datetime.now(UTC), 1.0)])
        alice.execute(f"set role {a.name}__owner")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            alice.execute(f"create table {a.name}.t (x int)")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="during recovery"):
            alice.execute("set default_transaction_read_only = off; begin read write")
    with connect_operator(rep.home, autocommit=True) as op:  # not even the superuser
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            op.execute(f"insert into {a.name}.activity__v1 (account_id, event_time, amount) values (1, now(), 1)")
    with a.connect("alice") as alice:  # the allowed counterpart: the primary takes the commit
        commit_rows(alice, group, [(1, dt.datetime.now(UTC), 1.0)])


def test_a_revoked_certificate_is_refused_by_the_replica_at_once(home: FstoreHome, rep: replica.Replica,
                                                                make_project: Any) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    bob = a.role("bob")
    app = pki.issue_certificate(home, bob, app_id="scorer", ttl=dt.timedelta(hours=1))
    certificates.record_in_catalog(home, app)
    session = on_replica(rep, home, bob, app_id="scorer", sslcert=app.cert_file, sslkey=app.key_file)
    assert session.execute("select session_user").fetchone()[0] == bob
    certificates.revoke(home, serial=app.serial)  # no wait, no keeper tick: the revocation is published
    with pytest.raises(psycopg.OperationalError):
        session.execute("select 1")  # its open session on the replica was ended
    session.close()
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        on_replica(rep, home, bob, app_id="scorer", sslcert=app.cert_file, sslkey=app.key_file)
    with on_replica(rep, home, bob) as conn:  # the allowed counterpart: bob's user certificate
        assert conn.execute("select session_user").fetchone()[0] == bob


def test_a_removed_member_cannot_read_on_the_replica(home: FstoreHome, rep: replica.Replica,
                                                    make_project: Any) -> None:
    a = make_project(owner="alice")
    ivan = a.add(unique("ivan"), "data-scientist")
    with a.connect("alice") as alice:
        alice.execute(f"set role {a.name}__owner")
        alice.execute(f"create table {a.name}.t (x int)")
        alice.execute(f"insert into {a.name}.t values (1)")
    replica.wait_replayed(home)
    material = material_for(home, ivan)
    session = on_replica(rep, home, ivan)
    assert session.execute(f"select count(*) from {a.name}.t").fetchone()[0] == 1
    with a.connect("alice") as alice:
        projects.remove_member(home, alice, a.name, ivan.split("__", 1)[1])
    with pytest.raises(psycopg.OperationalError):
        session.execute(f"select count(*) from {a.name}.t")  # ended on the replica as on the primary
    session.close()
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        open_psycopg(dataclasses.replace(material, port=rep.port, home=None), connect_timeout=5)


def test_server_status_and_start_show_the_replica(home: FstoreHome, rep: replica.Replica) -> None:
    result = CliRunner().invoke(main, ["--home", str(home.root), "server", "status", "--json"])
    assert result.exit_code == 0, result.output
    [status] = [r for r in json.loads(result.stdout)["replicas"] if r["name"] == rep.name]
    assert status["port"] == rep.port and status["state"] == "streaming" and status["lag_bytes"] is not None
    text = CliRunner().invoke(main, ["--home", str(home.root), "server", "status"])
    assert f"{rep.name}: port {rep.port}, running, streaming, lag" in text.stdout
    again = CliRunner().invoke(main, ["--home", str(home.root), "server", "start", "--replica"])
    assert again.exit_code == 0, again.output
    assert f"read replica {rep.name} running on port {rep.port}" in again.stdout
    assert [r.name for r in replica.replicas(home)] == [rep.name]  # idempotent: no second replica
