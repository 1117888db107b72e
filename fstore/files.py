"""Files written whole or not at all: the one atomic write of fstore.

The data goes to a temporary file beside the target (same directory, so the same
file system), is flushed, gets its mode, and is renamed over the target: a reader
sees the old file or the new one, never half of one, and a crash leaves the old
file in place. Exports, which write many files and directories, publish the same
way in :mod:`fstore.export`.

Example::

    write_atomic(home.settings_file, json.dumps(settings))          # 0644
    write_atomic(home.client_key("fraud__alice"), pem, mode=0o600)  # a private key
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

PRIVATE = 0o600
PUBLIC = 0o644


def write_atomic(path: Path, data: bytes | str, mode: int = PUBLIC) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` with ``mode``, atomically; returns ``path``.

    Missing parent directories are created. The temporary file is created with
    ``mode`` from the start, so a private file is never readable by others, even
    for a moment.

    >>> import tempfile; target = Path(tempfile.mkdtemp()) / "x.json"
    >>> write_atomic(target, "{}").read_text()
    '{}'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the umask may have taken bits away
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


__all__ = ["PRIVATE", "PUBLIC", "write_atomic"]
