"""``fstore train create`` / ``list`` / ``show``: the same training datasets from the command line."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

import fstore
from fstore.cli import main
from tests.cli.conftest import make_activity


def _setup(fraud: Any) -> str:
    """A feature group and a labels table in the project; returns the labels table's name."""
    make_activity(fraud)
    return f"{fraud.name}.labels"


def test_train_create_list_show(fraud: Any, home: Any, tmp_path: Any) -> None:
    labels = _setup(fraud)
    runner = CliRunner()
    role = fraud.role("bob")
    path = tmp_path / "train.parquet"
    result = runner.invoke(main, ["--home", str(home.root), "train", "create", "fraud_train", "--spine", labels,
                                  "--feature", "activity:*", "--label", "is_fraud", "--split", "train=0.5",
                                  "--split", "test=0.5", "--seed", "3", "--path", str(path), "--as", role])
    assert result.exit_code == 0, result.output
    assert "created training dataset fraud_train version 1: 8 rows" in result.output
    split_directory = f"directory {path}/ (one file per split: train.parquet, test.parquet)"
    assert f"note: writing {split_directory}" in result.stderr  # said before the build...
    assert f"exported 8 rows as parquet to {split_directory}" in result.stdout  # ...and after
    assert sorted(p.name for p in path.iterdir()) == ["test.parquet", "train.parquet"]

    stored = fstore.connect(fraud.name, "bob", home=home).get_training_dataset("fraud_train")
    assert stored.column("n_tx").to_pylist() == [11, 22, 33, 44, 54, None, None, None]
    assert sorted(set(stored.column("split").to_pylist())) == ["test", "train"]

    listed = runner.invoke(main, ["--home", str(home.root), "train", "list", "--json", "--as", fraud.role("carol")])
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.output)
    assert (entry["name"], entry["version"], entry["rows"], entry["created_by"]) == ("fraud_train", 1, 8, role)

    table = runner.invoke(main, ["--home", str(home.root), "train", "list", "--as", role])
    assert table.exit_code == 0 and "fraud_train" in table.output

    shown = runner.invoke(main, ["--home", str(home.root), "train", "show", "fraud_train", "--as", role])
    assert shown.exit_code == 0, shown.output
    for text in (f"{fraud.name}.fraud_train version 1", "test 0.5, train 0.5 (seed 3)", f"{fraud.name}.activity@1"):
        assert text in shown.stdout, text
    provenance = runner.invoke(main, ["--home", str(home.root), "train", "show", "fraud_train", "--json", "--as", role])
    assert provenance.exit_code == 0, provenance.output
    assert json.loads(provenance.stdout)["split"] == {"train": 0.5, "test": 0.5}


def test_train_create_errors_are_one_line(fraud: Any, home: Any) -> None:
    labels = _setup(fraud)
    runner = CliRunner()
    result = runner.invoke(main, ["--home", str(home.root), "train", "create", "x", "--spine", labels,
                                  "--feature", "activity:nope", "--as", fraud.role("bob")])
    assert result.exit_code == 1
    assert "feature nope does not exist in feature group" in result.output
    assert "Traceback" not in result.output
    bad_split = runner.invoke(main, ["--home", str(home.root), "train", "create", "x", "--spine", labels,
                                     "--feature", "activity:*", "--split", "train", "--as", fraud.role("bob")])
    assert bad_split.exit_code == 1 and "NAME=FRACTION" in bad_split.output
