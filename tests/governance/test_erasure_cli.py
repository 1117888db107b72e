"""``fstore forget PROJECT --key k=v --as ROLE``, run for real as real roles with their own
certificates: the report per table (and as ``--json``), the exported file by path, and
refusals in one clear line with exit code 1."""

from __future__ import annotations

from tests.cli.conftest import Cli, one_error_line
from tests.governance.conftest import ERASED, World


def test_forget_prints_rows_per_table_and_the_files_to_delete(world: World) -> None:
    cli = Cli(world.project.home)
    alice, bob = world.project.role("alice"), world.project.role("bob")
    refused = one_error_line(cli.run("forget", world.name, "--key", f"account_id={ERASED}", "--as", bob, code=1).stderr)
    assert refused.startswith(f"error: permission denied: only a Data Owner of project {world.name} may erase entities")
    bad = one_error_line(cli.run("forget", world.name, "--key", "account_id", "--as", alice, code=1).stderr)
    assert bad == "error: invalid --key 'account_id': use COLUMN=VALUE"
    unknown = one_error_line(cli.run("forget", world.name, "--key", "acount_id=1", "--as", alice, code=1).stderr)
    assert "has an entity key acount_id" in unknown
    assert cli.run("forget", world.name, "--as", alice, code=1).stderr.count("--key COLUMN=VALUE") == 1

    shown = cli.run("forget", world.name, "--key", f"account_id={ERASED}", "--as", alice).stdout
    assert f"{world.name}.profile__v1__online" in shown and "needs action" in shown
    assert str(world.export_path.resolve()) in shown.replace("\n", "")
    # again: nothing left to remove, the file is still listed (it is outside fstore's reach)
    again = cli.json("forget", world.name, "--key", f"account_id={ERASED}", "--as", alice)
    assert again["rows"] == 0 and again["keys"] == {"account_id": str(ERASED)}
    assert [e["path"] for e in again["needs_action"]["exports"]] == []  # no rows of this erasure were in it
    assert {t["table"].rpartition(".")[2] for t in again["tables"]} >= {"profile__v1", "train__td1", "tx__v1"}
