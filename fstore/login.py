"""Opening a feature store handle: as a project-user with their certificate, or as an
application with a short-lived certificate issued for a block.

Example::

    import fstore
    fs = fstore.connect("fraud", "alice")
    with fstore.application("fraud", "alice", "nightly", ttl="1h") as job:
        job.get_feature_group("activity").insert(df)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fstore.connection import ConnectionMaterial, material_for, open_psycopg
from fstore.errors import InvalidInput
from fstore.home import FstoreHome
from fstore.roles import check_app_id, project_user_role, split_project_user
from fstore.store import FeatureStore

def connect(
    project: str | None = None,
    user: str | None = None,
    home: str | FstoreHome | None = None,
    *,
    app_id: str | None = None,
    dsn: str | None = None,
) -> FeatureStore:
    """Open a feature store handle as ``project__user`` with that role's certificate.

    ``fstore.connect(dsn="service=fraud__alice")`` takes any libpq connection
    string instead (the role must still be a project-user).

    Example::

        fs = fstore.connect("fraud", "bob")                     # ~/.fstore/certs/fraud__bob.crt
        fs = fstore.connect("fraud", "bob", app_id="nightly")   # its application certificate
    """
    if dsn is not None:
        material = ConnectionMaterial(role="", port=0, sslcert=Path(), sslkey=Path(), sslrootcert=Path(), dsn=dsn)
        with open_psycopg(material) as probe:
            role = probe.execute("select session_user").fetchone()[0]
            port = probe.info.port
        split_project_user(role)
        return FeatureStore(ConnectionMaterial(role=role, port=port, sslcert=Path(), sslkey=Path(),
                                               sslrootcert=Path(), dsn=dsn))
    if project is None or user is None:
        raise InvalidInput("give a project and a user, or a dsn")
    fhome = home if isinstance(home, FstoreHome) else FstoreHome.resolve(home)
    return FeatureStore(material_for(fhome, project_user_role(project, user), app_id), fhome)


@contextmanager
def application(
    project: str,
    user: str,
    app_id: str,
    ttl: str | dt.timedelta = "1h",
    home: str | FstoreHome | None = None,
) -> Iterator[FeatureStore]:
    """A handle with a short-lived application certificate, issued for the block and revoked at exit.

    The database knows the session's application from the certificate serial, so
    commits and audit records name ``app_id``. The operator's home (with the CA) is needed.

    Example::

        with fstore.application("fraud", "alice", "nightly-train", ttl="1h") as fs:
            fs.get_feature_group("activity").insert(df)      # the commit names nightly-train
    """
    from fstore import certificates, pki
    from fstore.errors import NotFound

    fhome = home if isinstance(home, FstoreHome) else FstoreHome.resolve(home)
    role = project_user_role(project, user)
    lifetime = pki.parse_duration(ttl) if isinstance(ttl, str) else ttl
    record = pki.issue_certificate(fhome, role, app_id=check_app_id(app_id), ttl=lifetime)
    certificates.record_in_catalog(fhome, record)
    store = FeatureStore(material_for(fhome, role, app_id), fhome)
    try:
        yield store
    finally:
        store.close()
        try:
            certificates.revoke(fhome, serial=record.serial)
        except NotFound:
            pass  # already revoked (e.g. the member was removed inside the block)


__all__ = ["application", "connect"]
