"""Where an export goes: its parent directory must exist, and a split export is a directory.

``fstore export --out x.csv`` and ``fstore train create --path x.csv`` write one file,
unless the rows are split (a training dataset's split, ``--split-column``, ``train
create --split``): then ``x.csv`` is a directory holding one file per split
(``x.csv/train.csv``, ``x.csv/test.csv``; NPY: one subdirectory per split). The
commands say so before and after writing. A missing parent directory is refused,
named, unless ``--parents`` asks to create it.

Example::

    check_target(Path("out/x.csv"), parents=False)
    # NotFound: the directory /work/out does not exist: create it (mkdir -p /work/out) or pass --parents
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from fstore.errors import InvalidInput, NotFound

parents_option = click.option(
    "--parents", is_flag=True,
    help="Create missing parent directories of the export (like mkdir -p); without it they are refused.",
)


def check_target(path: Path, parents: bool) -> None:
    """Refuse an export whose parent directory is missing (create it with ``parents``)."""
    parent = path.expanduser().absolute().parent
    if parent.is_dir():
        return
    if parent.exists():
        raise InvalidInput(f"cannot write {path}: {parent} is not a directory")
    if not parents:
        raise NotFound(f"cannot write {path}: the directory {parent} does not exist: create it "
                       f"(mkdir -p {parent}) or pass --parents")
    parent.mkdir(parents=True)


def format_for(path: Path, fmt: str | None) -> str | None:
    """The export format: ``fmt``, else the one the suffix names (``x.csv``: ``csv``), else None."""
    from fstore.export import FORMATS

    by_suffix = {extension: name for name, extension in FORMATS.items() if extension}
    return fmt or by_suffix.get(path.suffix.lower())


def split_files(names: Sequence[str], fmt: str) -> list[str]:
    """The entries a split export holds: ``train.csv`` per split (NPY: ``train/``)."""
    from fstore.export import FORMATS

    extension = FORMATS.get(fmt) or "/"
    return [f"{name}{extension}" for name in names]


def describe_split_target(path: Path, names: Sequence[str], fmt: str) -> str:
    """``directory x.csv/ (one file per split: train.csv, test.csv)``."""
    entry = "subdirectory" if fmt == "npy" else "file"
    listed = f": {', '.join(split_files(names, fmt))}" if names else ""
    return f"directory {str(path).rstrip('/')}/ (one {entry} per split{listed})"
