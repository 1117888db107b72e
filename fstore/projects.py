"""Projects, members, shares and blocked users: thin calls to the SQL control plane.

The database decides who may do what (``sql/functions/20_control_plane.sql``); these
functions call it as the given identity, then do what only the operator's CA
can do (issue or revoke certificates, write pg_service entries).

Example::

    with connect(home, "fstore_admin", autocommit=True) as admin:
        create_project(home, admin, "fraud", owner="alice")
    with connect(home, "fraud__alice", autocommit=True) as alice:
        add_member(home, alice, "fraud", "bob", "data-scientist")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from fstore import certificates, pki
from fstore.citus import is_cluster
from fstore.cluster import drop_owned_on_workers, drop_worker_roles, precreate_worker_roles, sync_workers
from fstore.connection import material_for, write_service_entry
from fstore.errors import NotFound, translated
from fstore.home import FstoreHome

Connection = psycopg.Connection[Any]


@dataclass
class MemberAccess:
    """A new project-user: its role and where its certificate is."""

    role: str
    certificate: pki.CertificateRecord


def _call(conn: Connection, function: str, *args: Any) -> Any:
    """Call ``fstore.<function>(args...)`` and return its single value."""
    from psycopg import sql

    query = sql.SQL("select {}.{}({})").format(
        sql.Identifier("fstore"), sql.Identifier(function),
        sql.SQL(", ").join(sql.Placeholder() for _ in args),
    )
    with translated():
        return conn.execute(query, args).fetchone()[0]


def _grant_access(home: FstoreHome, role: str) -> MemberAccess:
    record = pki.issue_certificate(home, role)
    certificates.record_in_catalog(home, record)
    write_service_entry(material_for(home, role))
    return MemberAccess(role=role, certificate=record)


def _revoke_access(home: FstoreHome, roles: list[str]) -> int:
    """Revoke every certificate of these roles; returns how many were revoked."""
    count = 0
    for role in roles:
        try:
            revoked, _ = certificates.revoke(home, role=role)
            count += len(revoked)
        except NotFound:
            pass
    return count


def create_project(home: FstoreHome, conn: Connection, name: str, owner: str) -> MemberAccess:
    """Create project ``name`` with ``owner`` as its first Data Owner (admin only)."""
    if not is_cluster(home):
        return _grant_access(home, _call(conn, "create_project", name, owner))
    # a Citus cluster: the roles exist on the workers first (fstore.cluster.precreate_worker_roles);
    # then the new group roles log in there and the database grants reach them
    roles = [f"{name}__{kind}" for kind in ("owner", "data_owner", "data_scientist")] + [f"{name}__{owner}"]
    owner_role, data_owner = f"{name}__owner", f"{name}__data_owner"
    created = precreate_worker_roles(home, roles, [(owner_role, data_owner), (owner_role, "fstore_control"),
                                                   (data_owner, f"{name}__{owner}")])
    try:
        role = _call(conn, "create_project", name, owner)
    except Exception:
        drop_worker_roles(home, created)
        raise
    sync_workers(home)
    return _grant_access(home, role)


def delete_project(home: FstoreHome, conn: Connection, name: str) -> list[str]:
    """Delete a project, its schema, roles and members' certificates (admin only)."""
    if is_cluster(home):  # DROP OWNED runs as fstore_control on the workers: see create_project
        pattern = name.replace("_", "\\_") + "\\_\\_%"
        project_roles = [r[0] for r in conn.execute("select rolname from pg_roles where rolname like %s", (pattern,))]
        precreate_worker_roles(home, [], [(role, "fstore_control") for role in project_roles])
        drop_owned_on_workers(home, project_roles)
    roles = _call(conn, "delete_project", name)
    _revoke_access(home, roles)
    return roles


def list_projects(conn: Connection) -> list[dict[str, Any]]:
    """Projects the caller may see (the admin sees all)."""
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select p.name, p.owner_user, p.created_at, "
            "(select count(*) from fstore.members m where m.project = p.name) as members "
            "from fstore.projects p order by p.name"
        ).fetchall()


def add_member(home: FstoreHome, conn: Connection, project: str, user: str, role: str) -> MemberAccess:
    """Add ``user`` to ``project`` as ``data-owner`` or ``data-scientist`` (Data Owners only)."""
    login_role = _call(conn, "add_member", project, user, role)
    return _grant_access(home, login_role)


def set_member_role(conn: Connection, project: str, user: str, role: str) -> str:
    """Change a member's role; their open sessions end (Data Owners only)."""
    return _call(conn, "set_member_role", project, user, role)


def remove_member(home: FstoreHome, conn: Connection, project: str, user: str) -> str:
    """Remove a member: sessions end, login role dropped, certificates revoked (Data Owners only)."""
    if is_cluster(home):  # REASSIGN/DROP OWNED run as fstore_control on the workers: see create_project
        precreate_worker_roles(home, [], [(f"{project}__{user}", "fstore_control")])
    login_role = _call(conn, "remove_member", project, user)
    _revoke_access(home, [login_role])
    return login_role


def list_members(conn: Connection, project: str) -> list[dict[str, Any]]:
    """Members of a project the caller belongs to (the admin sees all)."""
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select user_name, role_name, project_role, added_at, added_by "
            "from fstore.members where project = %s order by user_name", (project,)
        ).fetchall()
    if not rows:
        raise NotFound(f"no members of project {project!r} are visible to you")
    return rows


def share_project(conn: Connection, project: str, with_project: str, read_write: bool = False) -> None:
    """Share ``project``'s feature store with another project, read-only unless ``read_write``."""
    _call(conn, "share_project", project, with_project, not read_write)


def unshare_project(conn: Connection, project: str, with_project: str) -> None:
    """Stop sharing; the other project's members lose access at once."""
    _call(conn, "unshare_project", project, with_project)


def list_shares(conn: Connection) -> list[dict[str, Any]]:
    """Shares the caller may see: its project's, in both directions."""
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select project, with_project, read_only, shared_at, shared_by from fstore.shares order by 1, 2"
        ).fetchall()


def block_user(home: FstoreHome, conn: Connection, user: str) -> list[str]:
    """Block a person in every project (admin only): no logins, sessions ended, certificates revoked."""
    roles = _call(conn, "block_user", user)
    _revoke_access(home, roles)
    return roles


def unblock_user(home: FstoreHome, conn: Connection, user: str) -> list[str]:
    """Let a blocked person log in again; each of their roles gets a new certificate."""
    roles = _call(conn, "unblock_user", user)
    for role in roles:
        _grant_access(home, role)
    return roles
