"""The project fixture works end to end: owner, scientist, share."""

from fstore import projects


def test_owner_writes_scientist_reads(make_project) -> None:
    fraud = make_project(owner="alice", scientists=["bob"])
    with fraud.connect("alice") as alice:
        alice.execute(f"set role {fraud.name}__owner")
        alice.execute(f"create table {fraud.name}.t (id int, v text)")
        alice.execute("reset role")
        alice.execute(f"insert into {fraud.name}.t values (1, 'x')")
    with fraud.connect("bob") as bob:
        assert bob.execute(f"select count(*) from {fraud.name}.t").fetchone()[0] == 1
        members = projects.list_members(bob, fraud.name)
        assert {m["user_name"] for m in members} == {"alice", "bob"}
