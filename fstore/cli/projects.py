"""Tenancy commands: ``project``, ``member``, ``share``/``unshare``, ``user``, ``policy``, ``audit``.

Each runs as the identity given by ``--as`` (default ``fstore_admin``) so that
PostgreSQL, not this program, decides whether it is allowed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click
from psycopg.rows import dict_row

from fstore import policies, projects, sensitive
from fstore.cli.base import FstoreGroup, as_option, connect_as, console, home_of, main
from fstore.cli.output import echo_json, json_option, table
from fstore.errors import translated
from fstore.roles import ProjectRole

ROLE_CHOICE = click.Choice([r.value for r in ProjectRole])


def _listing(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    """Print rows as a JSON array (every column) or as a table of ``columns``."""
    if as_json:
        echo_json(rows)
    else:
        console.print(table(rows, columns))


@main.group("project")
def project_group() -> None:
    """Create, delete and list projects (platform admin)."""


@project_group.command("create")
@click.argument("name")
@click.option("--owner", required=True, help="User name of the first Data Owner.")
@as_option
@click.pass_context
def project_create(ctx: click.Context, name: str, owner: str, as_role: str) -> None:
    """Create project NAME (schema + roles) with OWNER as Data Owner."""
    with connect_as(ctx, as_role) as conn:
        access = projects.create_project(home_of(ctx), conn, name, owner)
    console.print(f"created project {name}; {access.role} is its Data Owner "
                  f"(certificate serial {access.certificate.serial}; psql \"service={access.role}\")")


@project_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@as_option
@click.pass_context
def project_delete(ctx: click.Context, name: str, yes: bool, as_role: str) -> None:
    """Delete project NAME, its data, roles and members' certificates."""
    if not yes:
        click.confirm(f"Delete project {name} and all its data?", abort=True)
    with connect_as(ctx, as_role) as conn:
        roles = projects.delete_project(home_of(ctx), conn, name)
    console.print(f"deleted project {name}; dropped {len(roles)} member role(s)")


@project_group.command("list")
@as_option
@json_option
@click.pass_context
def project_list(ctx: click.Context, as_role: str, as_json: bool) -> None:
    """Projects visible to the identity."""
    with connect_as(ctx, as_role) as conn:
        rows = projects.list_projects(conn)
    _listing(rows, ["name", "owner_user", "members", "created_at"], as_json)


@main.group("member")
def member_group() -> None:
    """Add, change, remove and list project members (Data Owners)."""


@member_group.command("add")
@click.argument("project")
@click.argument("user")
@click.option("--role", "role", type=ROLE_CHOICE, required=True)
@as_option
@click.pass_context
def member_add(ctx: click.Context, project: str, user: str, role: str, as_role: str) -> None:
    """Add USER to PROJECT: creates PROJECT__USER, its certificate and pg_service entry."""
    with connect_as(ctx, as_role) as conn:
        access = projects.add_member(home_of(ctx), conn, project, user, role)
    console.print(f"added {access.role} as {role}; certificate serial {access.certificate.serial}; "
                  f"psql \"service={access.role}\"")


@member_group.command("role")
@click.argument("project")
@click.argument("user")
@click.option("--role", "role", type=ROLE_CHOICE, required=True)
@as_option
@click.pass_context
def member_role(ctx: click.Context, project: str, user: str, role: str, as_role: str) -> None:
    """Change USER's role in PROJECT (their open sessions end)."""
    with connect_as(ctx, as_role) as conn:
        login_role = projects.set_member_role(conn, project, user, role)
    console.print(f"{login_role} is now {role}")


@member_group.command("remove")
@click.argument("project")
@click.argument("user")
@as_option
@click.pass_context
def member_remove(ctx: click.Context, project: str, user: str, as_role: str) -> None:
    """Remove USER: certificates revoked, sessions terminated, login role dropped."""
    with connect_as(ctx, as_role) as conn:
        login_role = projects.remove_member(home_of(ctx), conn, project, user)
    console.print(f"removed {login_role}")


@member_group.command("list")
@click.argument("project")
@as_option
@json_option
@click.pass_context
def member_list(ctx: click.Context, project: str, as_role: str, as_json: bool) -> None:
    """Members of PROJECT."""
    with connect_as(ctx, as_role) as conn:
        rows = projects.list_members(conn, project)
    _listing(rows, ["user_name", "role_name", "project_role", "added_at", "added_by"], as_json)


class ShareGroup(FstoreGroup):
    """``fstore share list``, ``fstore share add P --with Q``, and ``fstore share P --with Q``
    (short for ``share add``; a project named ``add`` or ``list`` needs the long form)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["add", *args]
        return super().parse_args(ctx, args)


@main.group("share", cls=ShareGroup)
def share_group() -> None:
    """Share a project's feature store with another project, and list shares.

    `fstore share P --with Q` is short for `fstore share add P --with Q`.
    """


@share_group.command("add")
@click.argument("project")
@click.option("--with", "with_project", required=True, help="Project that gets access.")
@click.option("--read-write", is_flag=True, help="Let the other project's Data Owners write too.")
@as_option
@click.pass_context
def share(ctx: click.Context, project: str, with_project: str, read_write: bool, as_role: str) -> None:
    """Share PROJECT's feature store with another project (read-only by default; Data Owners of PROJECT)."""
    with connect_as(ctx, as_role) as conn:
        projects.share_project(conn, project, with_project, read_write)
    console.print(f"shared {project} with {with_project} ({'read-write' if read_write else 'read-only'})")


@share_group.command("list")
@click.option("--project", default=None, help="Only shares of this project (given or received).")
@as_option
@json_option
@click.pass_context
def share_list(ctx: click.Context, project: str | None, as_role: str, as_json: bool) -> None:
    """Shares the identity may see: its project's, given and received (the admin sees all)."""
    with connect_as(ctx, as_role) as conn:
        rows = [r for r in projects.list_shares(conn)
                if project is None or project in (r["project"], r["with_project"])]
    _listing(rows, ["project", "with_project", "read_only", "shared_at", "shared_by"], as_json)


@main.command("unshare")
@click.argument("project")
@click.option("--with", "with_project", required=True)
@as_option
@click.pass_context
def unshare(ctx: click.Context, project: str, with_project: str, as_role: str) -> None:
    """Stop sharing PROJECT with another project; access ends at once."""
    with connect_as(ctx, as_role) as conn:
        projects.unshare_project(conn, project, with_project)
    console.print(f"unshared {project} from {with_project}")


@main.group("user")
def user_group() -> None:
    """Block or unblock a person in every project (platform admin)."""


@user_group.command("block")
@click.argument("user")
@as_option
@click.pass_context
def user_block(ctx: click.Context, user: str, as_role: str) -> None:
    """Block USER: every PROJECT__USER role stops logging in, sessions end, certificates revoked."""
    with connect_as(ctx, as_role) as conn:
        roles = projects.block_user(home_of(ctx), conn, user)
    console.print(f"blocked {user}: {', '.join(roles) or 'no project roles yet'}")


@user_group.command("unblock")
@click.argument("user")
@as_option
@click.pass_context
def user_unblock(ctx: click.Context, user: str, as_role: str) -> None:
    """Unblock USER; each of their roles gets a new certificate."""
    with connect_as(ctx, as_role) as conn:
        roles = projects.unblock_user(home_of(ctx), conn, user)
    console.print(f"unblocked {user}: {', '.join(roles) or 'no project roles'}")


@main.group("policy")
def policy_group() -> None:
    """Row-level policies from policies/<project>.yml."""


@policy_group.command("apply")
@click.argument("project")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@as_option
@click.pass_context
def policy_apply(ctx: click.Context, project: str, path: Path | None, as_role: str) -> None:
    """Check (pglast) and apply PROJECT's row policies (a Data Owner's job)."""
    declared = policies.load_policies(path or policies.policy_file(project))
    grants = sensitive.load_sensitive_grants(path or policies.policy_file(project))
    with connect_as(ctx, as_role) as conn:
        count = policies.apply_policies(conn, project, declared)
        granted = sensitive.apply_sensitive_grants(conn, project, grants)
    console.print(f"applied {count} polic{'y' if count == 1 else 'ies'} to every table of project {project}"
                  f" and {granted} sensitive grant{'' if granted == 1 else 's'}")


@main.command("audit")
@click.option("--project", default=None)
@click.option("--since", default=None, help="ISO time or a duration like 1h, 7d.")
@click.option("--limit", default=100, show_default=True)
@json_option
@as_option
@click.pass_context
def audit(ctx: click.Context, project: str | None, since: str | None, limit: int, as_json: bool,
          as_role: str) -> None:
    """Show the append-only audit log (what the identity may see)."""
    from fstore.pki import parse_duration

    since_ts = None
    if since:
        try:
            since_ts = dt.datetime.fromisoformat(since)
        except ValueError:
            since_ts = dt.datetime.now(dt.timezone.utc) - parse_duration(since)
    with connect_as(ctx, as_role) as conn, translated(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select id, at, session_role, project, action, details, client_serial, app_id "
            "from fstore.audit_log where (%(p)s::text is null or project = %(p)s) "
            "and (%(s)s::timestamptz is null or at >= %(s)s) order by id desc limit %(l)s",
            {"p": project, "s": since_ts, "l": limit},
        ).fetchall()
    _listing(rows, ["id", "at", "session_role", "app_id", "project", "action", "details"], as_json)
