-- 0.1.0 had fstore.abandon_commit(id): a writer could begin a commit, insert rows with its
-- id and then delete the commit record, leaving rows no commit (and no audit record)
-- accounts for. The commit pipeline now decides before it begins a commit that there is
-- nothing to write, so the function goes.
drop function if exists fstore.abandon_commit(bigint);
