"""Refusals in words that say who may do it.

The control functions the CLI calls are executable only by the platform admin or
by a project's Data Owners; anyone else gets PostgreSQL's own refusal,
``permission denied for function add_member`` (SQLSTATE 42501). This module turns
that into a sentence naming who may do it and how to run it as them, keeping the
database's words at the end. The database still decides; this only explains.

Example::

    explain(PermissionDenied("permission denied for function add_member", sqlstate="42501"),
            {"project": "fraud", "as_role": "fraud__bob"})
    # only Data Owners of fraud may add members; fraud__bob is not one: run it with
    # --as fraud__USER for a Data Owner USER (`fstore member list fraud` shows them)
    # (database: permission denied for function add_member) (SQLSTATE 42501)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fstore.errors import FstoreError, PermissionDenied

INSUFFICIENT_PRIVILEGE = "42501"
_FUNCTION_REFUSED = re.compile(r"permission denied for function (\w+)")


@dataclass(frozen=True)
class Refusal:
    """Who may call a control function (``admin`` or ``data_owner``) and what it does."""

    who: str
    action: str


#: Every control function the CLI calls whose EXECUTE is not granted to PUBLIC.
REFUSALS: dict[str, Refusal] = {
    "create_project": Refusal("admin", "create projects"),
    "delete_project": Refusal("admin", "delete projects"),
    "block_user": Refusal("admin", "block users"),
    "unblock_user": Refusal("admin", "unblock users"),
    "add_member": Refusal("data_owner", "add members"),
    "set_member_role": Refusal("data_owner", "change members' roles"),
    "remove_member": Refusal("data_owner", "remove members"),
    "share_project": Refusal("data_owner", "share it with another project"),
    "unshare_project": Refusal("data_owner", "stop sharing it"),
    "set_row_policies": Refusal("data_owner", "apply its row policies"),
}


def sentence(refusal: Refusal, project: str | None, role: str | None) -> str:
    """Who may do it, whether the caller is one, and how to run it as one."""
    if refusal.who == "admin":
        who_not = f"; {role} is not the admin" if role and role != "fstore_admin" else ""
        return (f"only the platform admin may {refusal.action}{who_not}: "
                "run it as fstore_admin (the default of --as)")
    if project is None:
        return f"only a project's Data Owners may {refusal.action}" + (f"; {role} is not one" if role else "")
    who_not = f"; {role} is not one" if role else ""
    return (f"only Data Owners of {project} may {refusal.action}{who_not}: run it with --as {project}__USER "
            f"for a Data Owner USER (`fstore member list {project}` shows them)")


def explain(exc: FstoreError, params: Mapping[str, Any]) -> FstoreError:
    """``exc`` reworded when it is a refused call of a control function; else ``exc`` itself.

    ``params`` are the command's parameters: ``project`` names the project (``fstore
    project create|delete`` call it ``name``) and ``as_role`` the caller.
    """
    if exc.sqlstate != INSUFFICIENT_PRIVILEGE:
        return exc
    original = getattr(exc, "primary", None) or (exc.args[0] if exc.args else "")  # the server's own words
    match = _FUNCTION_REFUSED.fullmatch(str(original).strip())
    if match is None or match.group(1) not in REFUSALS:
        return exc
    refusal = REFUSALS[match.group(1)]
    project = params.get("project") if refusal.who == "data_owner" else None
    text = f"{sentence(refusal, project, params.get('as_role'))} (database: {original})"
    explained = PermissionDenied(text, sqlstate=exc.sqlstate)
    explained.__cause__ = exc.__cause__ or exc
    return explained
