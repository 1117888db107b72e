"""Where exports go: a split export to ``x.csv`` says it writes a directory (one file per
split), and a missing parent directory is refused by name unless ``--parents`` asks for it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from tests.cli.conftest import Cli, one_error_line


def _split_dataset(cli: Cli, fraud: Any, name: str = "fraud_train") -> None:
    cli.run("train", "create", name, "--spine", f"{fraud.name}.labels", "--feature", "activity:*",
            "--label", "is_fraud", "--split", "train=0.5", "--split", "test=0.5", "--seed", "3",
            "--as", fraud.role("bob"))


def _rows(path: Path) -> int:
    with path.open() as fh:
        return sum(1 for _ in csv.DictReader(fh))


def test_a_split_export_to_x_csv_says_it_writes_a_directory(cli: Cli, fraud: Any, activity: Any,
                                                            tmp_path: Path) -> None:
    _split_dataset(cli, fraud)
    out = tmp_path / "x.csv"
    result = cli.run("export", "fraud_train", "--format", "csv", "--out", str(out), "--as", fraud.role("bob"))
    assert f"note: writing directory {out}/ (one file per split), split by column 'split' (--no-split writes " \
           "one file)" in result.stderr
    assert f"to directory {out}/ (one file per split: " in result.stdout
    assert out.is_dir() and sorted(p.name for p in out.iterdir()) == ["test.csv", "train.csv"]
    assert _rows(out / "train.csv") + _rows(out / "test.csv") == 8

    whole = tmp_path / "whole.csv"
    one = cli.run("export", "fraud_train", "--format", "csv", "--out", str(whole), "--no-split",
                  "--as", fraud.role("bob"))
    assert whole.is_file() and _rows(whole) == 8 and "directory" not in one.output


def test_an_export_into_a_missing_directory_is_refused_by_name(cli: Cli, fraud: Any, activity: Any,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "missing" / "deeper" / "activity.parquet"
    result = cli.run("export", "activity__v1", "--out", str(out), "--as", fraud.role("bob"), code=1)
    assert one_error_line(result.stderr) == (
        f"error: cannot write {out}: the directory {out.parent} does not exist: create it "
        f"(mkdir -p {out.parent}) or pass --parents")
    assert not (tmp_path / "missing").exists()

    made = cli.run("export", "activity__v1", "--out", str(out), "--parents", "--as", fraud.role("bob"))
    assert out.is_file() and "wrote 25 rows" in made.stdout


def test_an_export_under_a_file_is_refused(cli: Cli, fraud: Any, activity: Any, tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("not a directory")
    out = tmp_path / "plain" / "x.parquet"
    result = cli.run("export", "activity__v1", "--out", str(out), "--parents", "--as", fraud.role("bob"), code=1)
    assert one_error_line(result.stderr) == f"error: cannot write {out}: {out.parent} is not a directory"


def test_train_create_into_a_missing_directory_is_refused_before_building(cli: Cli, fraud: Any, activity: Any,
                                                                          tmp_path: Path) -> None:
    path = tmp_path / "missing" / "train.parquet"
    result = cli.run("train", "create", "fraud_train", "--spine", f"{fraud.name}.labels", "--feature", "activity:*",
                     "--path", str(path), "--as", fraud.role("bob"), code=1)
    assert one_error_line(result.stderr) == (
        f"error: cannot write {path}: the directory {path.parent} does not exist: create it "
        f"(mkdir -p {path.parent}) or pass --parents")
    assert cli.json("train", "list", "--as", fraud.role("bob")) == []  # nothing was built

    made = cli.run("train", "create", "fraud_train", "--spine", f"{fraud.name}.labels", "--feature", "activity:*",
                   "--split", "train=0.5", "--split", "test=0.5", "--path", str(path), "--parents",
                   "--as", fraud.role("bob"))
    split_directory = f"directory {path}/ (one file per split: train.parquet, test.parquet)"
    assert f"note: writing {split_directory}" in made.stderr
    assert f"exported 8 rows as parquet to {split_directory}" in made.stdout
    assert sorted(p.name for p in path.iterdir()) == ["test.parquet", "train.parquet"]


def test_export_help_says_what_out_is(cli: Cli) -> None:
    text = " ".join(cli.run("export", "--help").stdout.split())
    assert "a directory of that name, one file per split, when the rows are split" in text
    assert "--parents" in text
