"""The one place that knows how projects, users and roles are named.

A project ``p`` has NOLOGIN group roles ``p__owner``, ``p__data_owner`` and
``p__data_scientist``; a person in it is the login role ``p__user``.

Example::

    >>> project_user_role("fraud", "alice")
    'fraud__alice'
    >>> split_project_user("fraud__alice")
    ('fraud', 'alice')
"""

from __future__ import annotations

import re
from enum import Enum

from fstore.errors import InvalidInput

# Patterns are matched with ``fullmatch``: ``$`` in ``re.match`` accepts a trailing newline.
PROJECT_NAME = re.compile(r"[a-z][a-z0-9_]{0,29}[a-z0-9]")
USER_NAME = re.compile(r"[a-z][a-z0-9_]*")
APP_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
# Project names that are, or look like, roles and schemas of PostgreSQL or fstore itself.
RESERVED_PROJECT_NAMES = frozenset({"postgres", "public", "information_schema"})
RESERVED_PROJECT_PREFIXES = ("pg_", "fstore")
SEPARATOR = "__"
RESERVED_USER_NAMES = frozenset({"owner", "data_owner", "data_scientist"})
ADMIN_ROLE = "fstore_admin"
SUPERUSER_ROLE = "postgres"
REPLICATOR_ROLE = "fstore_replicator"  # LOGIN REPLICATION; only `hostssl replication ... cert` admits it
MAX_ROLE_LENGTH = 63
MAX_USER_NAME_LENGTH = 60  # as fstore.check_user_name in SQL


class ProjectRole(str, Enum):
    """A member's role in a project, as users write it on the command line."""

    DATA_OWNER = "data-owner"
    DATA_SCIENTIST = "data-scientist"

    @property
    def group_suffix(self) -> str:
        return self.value.replace("-", "_")


def check_project_name(name: str) -> str:
    """Return ``name`` if it is a valid project name, else raise :class:`InvalidInput`."""
    if not isinstance(name, str) or not PROJECT_NAME.fullmatch(name) or SEPARATOR in name:
        raise InvalidInput(
            f"invalid project name {name!r}: use 2-31 characters a-z, 0-9 and _, "
            "starting with a letter, not ending with _, without '__'"
        )
    if name in RESERVED_PROJECT_NAMES or name.startswith(RESERVED_PROJECT_PREFIXES):
        raise InvalidInput(
            f"invalid project name {name!r}: it is reserved "
            "(postgres, public, information_schema, pg_*, fstore*)"
        )
    return name


def check_user_name(name: str) -> str:
    """Return ``name`` if it is a valid user name, else raise :class:`InvalidInput`."""
    if (
        not isinstance(name, str)
        or not USER_NAME.fullmatch(name)
        or SEPARATOR in name
        or name in RESERVED_USER_NAMES
        or len(name.encode()) > MAX_USER_NAME_LENGTH
    ):
        raise InvalidInput(
            f"invalid user name {name!r}: use a-z, 0-9 and _, starting with a letter, "
            f"without '__', at most {MAX_USER_NAME_LENGTH} characters, and not owner, data_owner or data_scientist"
        )
    return name


def check_app_id(app_id: str) -> str:
    """Return ``app_id`` if it is a valid application id, else raise :class:`InvalidInput`."""
    if not isinstance(app_id, str) or not APP_ID.fullmatch(app_id):
        raise InvalidInput(
            f"invalid application id {app_id!r}: use 1-63 characters a-z, 0-9, '_', '.', '-'"
        )
    return app_id


def project_user_role(project: str, user: str) -> str:
    """The login role of ``user`` in ``project``."""
    role = f"{check_project_name(project)}{SEPARATOR}{check_user_name(user)}"
    if len(role) > MAX_ROLE_LENGTH:
        raise InvalidInput(f"role name {role!r} is longer than {MAX_ROLE_LENGTH} bytes")
    return role


def group_role(project: str, kind: str) -> str:
    """``p__owner``, ``p__data_owner`` or ``p__data_scientist``."""
    if kind not in RESERVED_USER_NAMES:
        raise InvalidInput(f"unknown group role kind {kind!r}")
    return f"{check_project_name(project)}{SEPARATOR}{kind}"


def split_project_user(role: str) -> tuple[str, str]:
    """Split ``project__user`` into its parts, validating both."""
    project, sep, user = role.partition(SEPARATOR)
    if not sep:
        raise InvalidInput(f"{role!r} is not a project-user role (expected project__user)")
    return check_project_name(project), check_user_name(user)


def check_login_role(role: str) -> str:
    """A role a certificate may be issued for: the admin or a project-user."""
    if role == ADMIN_ROLE:
        return role
    if role == SUPERUSER_ROLE:
        raise InvalidInput("certificates are never issued for the superuser")
    split_project_user(role)
    return role
