"""dbt in a process of its own: ``python -m fstore.dbt_process SUMMARY.json DBT-ARGS...``.

fstore runs every dbt command this way rather than in the caller's process. dbt is not
re-entrant, and dbt-postgres connects with psycopg2 from several threads at once: in a
process that has loaded other TLS stacks (psycopg's libpq, TensorFlow's BoringSSL) those
connects crashed the whole process now and then (psycopg/psycopg2#543). The child writes
a JSON summary the parent turns back into :class:`fstore.dbt.DbtRun`: success, the
exception's text, each node's id, status and message (or ``dbt ls``'s names), and the
lines fstore's macros logged.

Example::

    python -m fstore.dbt_process /tmp/summary.json run --project-dir dbt_project --profiles-dir ~/.fstore/dbt/fraud__alice
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def plain_result(result: Any) -> Any:
    """dbt's result object as JSON: ``{"results": [{unique_id, status, message}]}`` for runs,
    builds and tests, a list of strings for ``ls``, else None."""
    if isinstance(result, list):
        return [str(item) for item in result]
    nodes = getattr(result, "results", None)
    if nodes is None:
        return None
    return {"results": [{"unique_id": getattr(getattr(r, "node", None), "unique_id", "?"),
                         "status": str(getattr(r, "status", "")), "message": getattr(r, "message", None)}
                        for r in nodes]}


def main(argv: list[str]) -> int:
    """Run dbt with ``argv[1:]``, write the summary to ``argv[0]``; exit 0 when it succeeded."""
    from dbt.cli.main import dbtRunner

    summary_path, args = Path(argv[0]), argv[1:]
    logs: list[str] = []

    def collect(event: Any) -> None:
        if event.info.name == "JinjaLogInfo":
            logs.append(event.data.msg)

    outcome = dbtRunner(callbacks=[collect]).invoke(args)
    summary = {"success": bool(outcome.success), "logs": logs, "result": plain_result(outcome.result),
               "exception": f"{outcome.exception}" if outcome.exception is not None else None}
    summary_path.write_text(json.dumps(summary, default=str))
    return 0 if outcome.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
