#!/bin/sh
# The keeper container: bring the database up to the image's sql/ (`fstore migrate`, as
# `fstore server start` does on the embedded server), on every start, as soon as the
# database answers; meanwhile, and then, run the CRL keeper in the foreground.
set -eu
(
  until python - <<'PY'
import sys
from fstore.connection import connect_operator
from fstore.home import FstoreHome
from fstore.migrations import apply_migrations
try:
    with connect_operator(FstoreHome.resolve("/fstore-home"), autocommit=True, connect_timeout=5) as conn:
        applied = apply_migrations(conn)
except Exception as exc:  # the database is not up yet, or a migration failed: say so, retry
    print(f"fstore migrate: {exc}", file=sys.stderr)
    sys.exit(1)
print(f"fstore migrate: applied {len(applied)} file(s){': ' + ', '.join(applied) if applied else ''}")
PY
  do sleep 3; done
) &
exec python -m fstore.crlkeeper --home /fstore-home
