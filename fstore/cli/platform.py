"""Platform commands: ``init``, ``server``, ``cert``, ``env``, ``psql``, ``migrate``."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import click
import yaml
from rich.table import Table

from fstore import cluster, pki, server
from fstore.cakeys import DEFAULT_PASSPHRASE_ENV
from fstore.cli.base import console, err_console, home_of, main
from fstore.cli.homes import require_server
from fstore.cli.output import echo_json, json_option
from fstore.cli.report import EXIT_ERROR, EXIT_NOT_RUNNING
from fstore.connection import connect_operator, material_for, write_service_entry
from fstore.errors import InvalidInput
from fstore.home import DEFAULT_PORT


@main.command()
@click.option("--hostname", "hostnames", multiple=True, help="Extra SAN for the server certificate.")
@click.option("--ca-passphrase-env", "passphrase_env", default=None, metavar="VAR",
              help=f"Encrypt the CA keys with the passphrase in $VAR (default: ${DEFAULT_PASSPHRASE_ENV} if set).")
@click.pass_context
def init(ctx: click.Context, hostnames: tuple[str, ...], passphrase_env: str | None) -> None:
    """Create the fstore home: root and intermediate CA, CRLs, server and admin certificates."""
    home = home_of(ctx, must_exist=False)
    names = pki.default_hostnames() + [h for h in hostnames if h not in pki.default_hostnames()]
    if passphrase_env is None and os.environ.get(DEFAULT_PASSPHRASE_ENV):
        passphrase_env = DEFAULT_PASSPHRASE_ENV
    if pki.init_ca(home, names, passphrase_env=passphrase_env):
        pki.issue_certificate(home, "fstore_admin")
        console.print(f"initialised fstore home at [bold]{home.root}[/]")
        if passphrase_env:
            console.print(f"CA keys encrypted: every command that signs reads the passphrase from ${passphrase_env}")
    else:
        console.print(f"fstore home at [bold]{home.root}[/] already initialised; nothing changed")


# --- server -------------------------------------------------------------------------


@main.group("server")
def server_group() -> None:
    """Run the embedded PostgreSQL server."""


@server_group.command("start")
@click.option("--port", type=int, default=None, help=f"TCP port (default: last used, else {DEFAULT_PORT}).")
@click.option("--listen", default="localhost", show_default=True, help="listen_addresses for TLS clients.")
@click.option("--workers", type=int, default=None,
              help="Run a Citus cluster: this server as coordinator and N workers (docs/cluster.md).")
@click.option("--replica", "one_replica", is_flag=True,
              help="Also run a streaming read replica (at least one; docs/replicas.md).")
@click.option("--replicas", type=click.IntRange(0, 8), default=0, help="Run at least N read replicas.")
@click.pass_context
def server_start(ctx: click.Context, port: int | None, listen: str, workers: int | None, one_replica: bool,
                 replicas: int) -> None:
    """Initialise (once) and start the server (and its replicas); a second start says it is running."""
    from fstore import cluster, replica

    home = home_of(ctx)
    if workers is None and cluster.is_cluster(home):
        workers = len(cluster.workers(home))
    if workers:
        result = cluster.start_cluster(home, workers, server.check_port(port) if port else None, listen=listen)
        console.print("Citus workers: " + ", ".join(f"{n.name} on port {n.port}" for n in cluster.workers(home)))
    else:
        result = server.start(home, server.check_port(port) if port else None, listen=listen)
    if result.already_running:
        console.print(f"server already running on port {result.port}")
    else:
        note = " (new data directory)" if result.initialised else ""
        console.print(f"server started on port {result.port}{note}")
    console.print(f"CRL keeper running (pid {result.keeper_pid}, log {home.keeper_log_file})")
    wanted = max(replicas, 1 if one_replica else 0)
    if wanted or replica.replicas(home):
        for rep in replica.start_replicas(home, wanted):
            console.print(f"read replica {rep.name} running on port {rep.port} ({rep.home.data_dir})")


@server_group.command("stop")
@click.pass_context
def server_stop(ctx: click.Context) -> None:
    """Stop the server and its read replicas (idempotent); on a cluster, the coordinator and its workers."""
    from fstore import cluster

    home = home_of(ctx)
    if cluster.is_cluster(home):
        stopped = cluster.stop_cluster(home)
        console.print("stopped: " + ", ".join(stopped) if stopped else "cluster was not running")
        return
    console.print("server stopped" if server.stop(home) else "server was not running")


@server_group.command("status")
@json_option
@click.pass_context
def server_status(ctx: click.Context, as_json: bool) -> None:
    """Running?, port, version, extensions, data directory, CRL expiry and the CRL keeper.

    Exits 3 when the server is not running, 1 when the CRL has expired (every TLS
    login then fails); the same with --json.
    """
    info = server.status(home_of(ctx))
    if as_json:
        echo_json(info)
    else:
        table = Table(show_header=False, box=None)
        for key, value in info.items():
            if key in ("warnings", "errors"):
                continue
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            if key == "replicas":  # one line each: port, running, streaming, lag
                value = "\n".join(
                    f"{r['name']}: port {r['port']}, {'running' if r['running'] else 'stopped'}, "
                    f"{r['state'] or 'not streaming'}, lag {r['lag_bytes'] if r['lag_bytes'] is not None else '?'}"
                    f" bytes ({r['replay_lag_s'] or 0:.3f} s)" for r in value)
            table.add_row(f"[bold]{key}[/]", str(value))
        console.print(table)
        for message in info["warnings"]:
            err_console.print(f"[bold yellow]warning:[/] {message}", highlight=False)
        for message in info["errors"]:
            err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    if not info["running"]:
        ctx.exit(EXIT_NOT_RUNNING)
    if info["errors"]:
        ctx.exit(EXIT_ERROR)


@server_group.command("logs")
@click.option("-n", "--lines", default=50, show_default=True)
@json_option
@click.pass_context
def server_logs(ctx: click.Context, lines: int, as_json: bool) -> None:
    """Show the end of the server log (--json: {"log_file": ..., "lines": [...]})."""
    home = home_of(ctx)
    tail = server.log_tail(home, lines)
    if as_json:
        echo_json({"log_file": home.log_file, "lines": tail})
        return
    for line in tail:
        click.echo(line)


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Apply pending SQL migrations from sql/."""
    home = require_server(home_of(ctx))
    with connect_operator(home, autocommit=True) as conn:
        applied = server.migrate(home, conn)
    cluster.sync_workers(home)  # nothing on a single node
    console.print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))


# --- certificates -----------------------------------------------------------------


@main.group("cert")
def cert_group() -> None:
    """Issue, request, sign, list and revoke certificates; re-sign CRLs."""


@cert_group.command("issue")
@click.argument("role")
@click.option("--app", "app_id", default=None, help="Application id recorded with the certificate.")
@click.option("--ttl", default=None, help="Lifetime, e.g. 1h, 7d (default: 365d; 1h with --app).")
@click.pass_context
def cert_issue(ctx: click.Context, role: str, app_id: str | None, ttl: str | None) -> None:
    """Issue a client certificate whose CN is ROLE."""
    home = home_of(ctx)
    record = pki.issue_certificate(home, role, app_id=app_id, ttl=pki.parse_duration(ttl) if ttl else None)
    _register_in_catalog(ctx, record)
    console.print(f"issued serial {record.serial} for {role}, expires {record.not_after}")
    console.print(f"  certificate {record.cert_file}\n  key         {record.key_file}")


def _register_in_catalog(ctx: click.Context, record: pki.CertificateRecord) -> None:
    from fstore.certificates import record_in_catalog

    record_in_catalog(home_of(ctx), record)


@cert_group.command("request")
@click.argument("role")
@click.option("--out", "out_dir", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Where to write ROLE.key (0600) and ROLE.csr.")
def cert_request(role: str, out_dir: str) -> None:
    """Make your own key and a signing request for ROLE; the key never leaves you.

    Run by the member, where they are (no fstore home needed). Send ROLE.csr to the
    operator, who runs `fstore cert sign ROLE.csr` and sends back ROLE.crt.
    """
    from fstore.csr import make_request

    key_path, csr_path = make_request(role, Path(out_dir).expanduser())
    console.print(f"key     {key_path} (0600: keep it, never send it)\nrequest {csr_path}")
    console.print(f"send {csr_path.name} to your fstore operator: fstore cert sign {csr_path.name}")


@cert_group.command("sign")
@click.argument("csr_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--app", "app_id", default=None, help="Sign an application certificate for APP.")
@click.option("--ttl", default=None, help="Lifetime, e.g. 1h, 30d (default: 365d; 1h with --app).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Where to write ROLE.crt (default: next to CSR_FILE).")
@click.pass_context
def cert_sign(ctx: click.Context, csr_file: str, app_id: str | None, ttl: str | None, out_dir: str | None) -> None:
    """Sign a member's request (its CN must be a login role); record it; write ROLE.crt.

    fstore sets the subject and the usage (client authentication only) and ignores
    every extension the request asks for. A user certificate retires the role's
    earlier user certificates.
    """
    from fstore.csr import sign_request

    home = home_of(ctx)
    path = Path(csr_file)
    record = sign_request(home, path.read_bytes(), out_dir=Path(out_dir) if out_dir else path.parent,
                          app_id=app_id, ttl=pki.parse_duration(ttl) if ttl else None)
    _register_in_catalog(ctx, record)
    console.print(f"signed serial {record.serial} for {record.role} ({record.kind}), expires {record.not_after}")
    console.print(f"  certificate {record.cert_file} (leaf + intermediate)\n"
                  f"  give it and {home.root_ca_cert} (sslrootcert) to the member")


@cert_group.command("revoke")
@click.argument("role", required=False)
@click.option("--serial", default=None, help="Revoke one certificate by serial.")
@click.pass_context
def cert_revoke(ctx: click.Context, role: str | None, serial: str | None) -> None:
    """Revoke ROLE's certificates (or one --serial), reload the CRL, end their sessions."""
    if (role is None) == (serial is None):
        raise InvalidInput("give a ROLE or --serial, not both")
    from fstore.certificates import revoke

    revoked, terminated = revoke(home_of(ctx), role=role, serial=serial)
    for record in revoked:
        console.print(f"revoked serial {record.serial} ({record.role}, {record.kind})")
    console.print(f"terminated {terminated} open session(s)")


@cert_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include the server certificate and CRL probes.")
@json_option
@click.pass_context
def cert_list(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """Serial, subject, kind, app id, expiry and revocation of every issued certificate."""
    now = dt.datetime.now(dt.timezone.utc)
    records = [r for r in pki.list_certificates(home_of(ctx))
               if show_all or not (r.kind == "service" or r.app_id == pki.CANARY_APP)]
    if as_json:
        echo_json([{"serial": r.serial, "subject": r.subject, "role": r.role, "kind": r.kind, "app_id": r.app_id,
                    "not_before": r.not_before, "not_after": r.not_after, "expired": r.expires < now,
                    "revoked_at": r.revoked_at, "cert_file": r.cert_file, "key_file": r.key_file}
                   for r in records])
        return
    table = Table("serial", "subject", "kind", "app id", "expires", "revoked")
    for r in records:
        expired = " (expired)" if r.expires < now else ""
        table.add_row(r.serial, r.subject, r.kind, r.app_id or "", r.not_after[:19] + expired,
                      r.revoked_at[:19] if r.revoked_at else "")
    console.print(table)


@cert_group.command("crl")
@click.pass_context
def cert_crl(ctx: click.Context) -> None:
    """Re-sign the CRLs of both CAs and reload the server."""
    home = home_of(ctx)
    with pki.publication_lock(home):
        next_update = pki.resign_crls(home)
        if server.operator_reachable(home):
            server.reload(home)
    console.print(f"CRLs re-signed; next update {next_update.isoformat()}")


# --- client material --------------------------------------------------------------


@main.command("env")
@click.argument("role")
@click.option("--app", "app_id", default=None, help="Use ROLE's application certificate.")
@json_option
@click.pass_context
def env_command(ctx: click.Context, role: str, app_id: str | None, as_json: bool) -> None:
    """Write ROLE's pg_service.conf entry ([ROLE@APP] with --app); print it, the SQLAlchemy URL
    and a dbt profile."""
    material = material_for(home_of(ctx), role, app_id)
    path = write_service_entry(material)
    if as_json:
        echo_json({"service": material.service_name, "service_file": path, "params": material.params(),
                   "sqlalchemy_url": material.sqlalchemy_url(), "dbt_profile": material.dbt_profile()})
        return
    click.echo(f"# pg_service entry written to {path}: psql \"service={material.service_name}\"")
    click.echo(material.service_entry())
    click.echo(f"# SQLAlchemy URL\n{material.sqlalchemy_url()}\n")
    click.echo("# dbt profile (profiles.yml)")
    click.echo(yaml.safe_dump(material.dbt_profile(), sort_keys=False))


@main.command("psql", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("role")
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def psql_command(ctx: click.Context, role: str, psql_args: tuple[str, ...]) -> None:
    """Open psql as ROLE with its certificate (extra arguments go to psql)."""
    material = material_for(require_server(home_of(ctx)), role)
    psql = shutil.which("psql") or "/usr/bin/psql"
    os.execv(psql, [psql, material.conninfo(), *psql_args])
