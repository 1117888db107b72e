"""``fstore train create`` reuses a name only on purpose, in the command's words:
``--new-version`` or ``--version N``, never the Python API's ``new_version=True``."""

from __future__ import annotations

from typing import Any

from tests.cli.conftest import Cli, one_error_line


def test_a_reused_name_needs_new_version_or_the_next_version(cli: Cli, fraud: Any, activity: Any) -> None:
    create = ["train", "create", "fraud_train", "--spine", f"{fraud.name}.labels", "--feature", "activity:*",
              "--as", fraud.role("bob")]
    assert "version 1: 8 rows" in cli.run(*create).stdout
    again = one_error_line(cli.run(*create, code=1).stderr)
    assert again == ("error: training dataset fraud_train exists already (latest version 1): pass --new-version "
                     "(or --version 2) to build version 2, or choose another name (SQLSTATE 42710)")
    assert "version 2: 8 rows" in cli.run(*create, "--new-version").stdout
    skipped = one_error_line(cli.run(*create, "--version", "5", code=1).stderr)
    assert skipped == ("error: training dataset fraud_train has versions 1 to 2: version 5 cannot be built now "
                       "(the next is 3) (SQLSTATE 42710)")
    assert "version 3: 8 rows" in cli.run(*create, "--version", "3").stdout
    assert [d["version"] for d in cli.json("train", "list", "--as", fraud.role("bob"))] == [3, 2, 1]
