-- The commit barrier of distributed feature groups (docs/cluster.md, "Commits and readers
-- across workers").
--
-- Citus has no distributed snapshot. A commit that wrote shards on several workers ends
-- with two-phase commit: PREPARE TRANSACTION on the workers (Citus's XACT_EVENT_PRE_COMMIT
-- callback), the coordinator's own commit, then COMMIT PREPARED on every worker (its
-- XACT_EVENT_COMMIT callback, which waits for every worker's answer). A read of shards on
-- several workers in that window can see the commit on one worker and not on another.
--
-- The barrier is a heavyweight lock per distributed feature group, an advisory lock in a
-- key space of fstore's own ((1718837859 = 'fsbc', feature group id), the two-integer form):
--  * writers: a DEFERRABLE INITIALLY DEFERRED constraint trigger on fstore.commits
--    (fstore.commit_barrier_enter) takes it EXCLUSIVE at COMMIT. Deferred triggers fire in
--    CommitTransaction's AfterTriggerFireDeferred, before the PRE_COMMIT callbacks (the
--    PREPAREs); a transaction's heavyweight locks are released after its XACT_EVENT_COMMIT
--    callbacks (ResourceOwnerRelease, RESOURCE_RELEASE_LOCKS, comes after them), that is
--    after the last COMMIT PREPARED. Every writer path (Python, dbt, plain SQL) inserts its
--    commit record, so every one takes it, with no client change. All the groups a
--    transaction commits are locked at once, in id order (the readers' order: no deadlock).
--  * readers: fstore.commit_barrier(ids) takes it SHARED for the groups a read will touch,
--    in the reader's transaction, before the read statement: every worker snapshot of that
--    read is then taken while no commit of those groups is between its first PREPARE and
--    its last COMMIT PREPARED, and none can enter that window until the read's transaction
--    ends. Readers do not block each other; a commit waits only for readers that hold it.
--  * bound: a writer waits fstore.commit_barrier_wait at most (default 5s, at most 60s; a
--    setting of the writer's own session), then commits anyway with a WARNING naming the
--    group: a reader (a Data Scientist, a share partner) holding the barrier in a long
--    transaction delays a commit by that much and no more, and cannot make it fail. What
--    that costs: a read that still holds the barrier after the bound may see that one commit
--    half applied (a read statement shorter than the bound never does).
--  * nobody else can take the key: on a Citus coordinator EXECUTE on the two-integer
--    advisory-lock functions is revoked from PUBLIC (tenants keep the one-bigint form), and
--    fstore.commit_barrier locks only groups the caller may read (feature_group_by_id).
-- On a single node (no Citus) nothing of this runs: the trigger returns at once, the reader
-- function takes nothing, and no privilege is changed.

set role fstore_control;

create or replace function fstore.commit_barrier_key(p_feature_group_id bigint) returns integer
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_feature_group_id is null or p_feature_group_id < 1 or p_feature_group_id > 2147483647 then
    raise exception 'feature group id % has no commit barrier key (1 .. 2147483647)', p_feature_group_id
      using errcode = '22003';
  end if;
  return p_feature_group_id::integer;
end $$;
comment on function fstore.commit_barrier_key(bigint) is
  'The second half of a feature group''s commit barrier key (advisory lock (1718837859, id)): its id, which must fit an integer. One key per group: no two groups share a barrier.';

create or replace function fstore.commit_barrier_wait() returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  v_text text := nullif(current_setting('fstore.commit_barrier_wait', true), '');
  v_wait interval;
begin
  begin
    v_wait := coalesce(v_text, '5s')::interval;
  exception when others then
    raise warning 'fstore.commit_barrier_wait % is not an interval: 5s used', quote_literal(v_text);
    v_wait := '5s';
  end;
  v_wait := least(greatest(v_wait, interval '1 millisecond'), interval '60 seconds');
  return (ceil(extract(epoch from v_wait) * 1000))::bigint::text || 'ms';
end $$;
comment on function fstore.commit_barrier_wait() is
  'How long a commit waits for the readers holding its groups'' barrier: the session setting fstore.commit_barrier_wait (an interval, default 5s), kept between 1 ms and 60 s.';

create or replace function fstore.commit_barrier_enter() returns trigger
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_group record;
  v_wait text;
  v_caller_lock_timeout text;
begin
  if not fstore.citus_present() then
    return null;
  end if;
  v_wait := fstore.commit_barrier_wait();
  -- every group this transaction commits, in id order (the order readers lock in); a second
  -- firing in the same transaction re-takes locks it holds (no wait)
  for v_group in
    select distinct g.id, g.project, g.name, g.offline_table
      from fstore.commits c join fstore.feature_groups g on g.id = c.feature_group_id
     where c.backend_pid = pg_catalog.pg_backend_pid() and c.xact = pg_catalog.pg_current_xact_id()
     order by g.id
  loop
    if not fstore.is_distributed(format('%I.%I', v_group.project, v_group.offline_table)::regclass) then
      continue;
    end if;
    v_caller_lock_timeout := current_setting('lock_timeout');
    begin
      perform set_config('lock_timeout', v_wait, true);
      perform pg_catalog.pg_advisory_xact_lock(1718837859, fstore.commit_barrier_key(v_group.id));
      perform set_config('lock_timeout', v_caller_lock_timeout, true);
    exception when lock_not_available then
      -- the subtransaction's set_config is rolled back with it
      raise warning 'commit of feature group %.% went ahead after waiting % for readers holding its commit barrier',
        v_group.project, v_group.name, v_wait
        using detail = 'a multi-shard read still holding the barrier may see this commit on some workers only',
              hint = 'readers: keep transactions that read distributed feature groups short';
    end;
  end loop;
  return null;
end $$;
comment on function fstore.commit_barrier_enter() is
  'Constraint trigger (deferred, on fstore.commits): at COMMIT, take the commit barrier of every distributed feature group this transaction commits, exclusive, waiting fstore.commit_barrier_wait at most; held until the last worker''s COMMIT PREPARED.';

drop trigger if exists commit_barrier on fstore.commits;
create constraint trigger commit_barrier after insert on fstore.commits
  deferrable initially deferred for each row execute function fstore.commit_barrier_enter();

create or replace function fstore.commit_barrier(p_feature_group_ids bigint[]) returns integer
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_id bigint;
  v_fg fstore.feature_groups;
  v_taken integer := 0;
begin
  if not fstore.citus_present() then
    return 0;
  end if;
  if cardinality(p_feature_group_ids) > 1000 then
    raise exception 'a read takes the commit barrier of 1000 feature groups at most, not %',
      cardinality(p_feature_group_ids) using errcode = '54000';
  end if;
  for v_id in select distinct i from unnest(p_feature_group_ids) i where i is not null order by i loop
    v_fg := fstore.feature_group_by_id(v_id);  -- P0002 unless the caller may read the group
    if fstore.is_distributed(format('%I.%I', v_fg.project, v_fg.offline_table)::regclass) then
      perform pg_catalog.pg_advisory_xact_lock_shared(1718837859, fstore.commit_barrier_key(v_id));
      v_taken := v_taken + 1;
    end if;
  end loop;
  return v_taken;
end $$;
comment on function fstore.commit_barrier(bigint[]) is
  'Before a read of several shards: take, shared and until this transaction ends, the commit barrier of each distributed feature group of p_feature_group_ids the caller may read (in id order), so the read sees every commit of them whole; returns how many were taken (0 on a single node). Refused for a group the caller may not read.';

create or replace function fstore.commit_barrier_features(p_features text[]) returns integer
language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
begin
  if not fstore.citus_present() or not fstore.cluster_has_workers() then
    return 0;
  end if;
  return fstore.commit_barrier(array(select (g->>'id')::bigint
                                       from jsonb_array_elements(fstore.resolve_features(p_features, true)) g));
end $$;
comment on function fstore.commit_barrier_features(text[]) is
  'fstore.commit_barrier for the feature groups of feature references (as fstore.resolve_features resolves them, with full feature names: only the groups matter): what a point-in-time read takes before its statement.';

create or replace function fstore.distributed_feature_groups(p_features text[]) returns jsonb
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_id bigint;
  v_fg fstore.feature_groups;
  v_out jsonb := '{}';
begin
  if not fstore.citus_present() or not fstore.cluster_has_workers() then
    return v_out;
  end if;
  for v_id in select distinct (g->>'id')::bigint from jsonb_array_elements(fstore.resolve_features(p_features, true)) g loop
    v_fg := fstore.feature_group_by_id(v_id);
    if fstore.is_distributed(format('%I.%I', v_fg.project, v_fg.offline_table)::regclass) then
      v_out := v_out || jsonb_build_object(v_id::text,
                                           fstore.check_distribution_key(v_fg.name, v_fg.entity_keys, v_fg.options));
    end if;
  end loop;
  return v_out;
end $$;
comment on function fstore.distributed_feature_groups(text[]) is
  'Of the feature groups of feature references (as fstore.resolve_features resolves them), the distributed ones: {"<id>": "<distribution key>"} ({} on a single node). Online lookups use it to know when a read spans shards.';

grant execute on function
  fstore.commit_barrier_key(bigint),
  fstore.commit_barrier_wait(),
  fstore.commit_barrier(bigint[]),
  fstore.commit_barrier_features(text[]),
  fstore.distributed_feature_groups(text[])
  to public;
revoke execute on function fstore.commit_barrier_enter() from public;
reset role;

-- the barrier's key space is fstore's: on a Citus coordinator nobody else may take a
-- two-integer advisory lock (a tenant holding a group's key would stall its commits, or
-- block its readers); the one-bigint form stays PUBLIC. fstore_control owns the two
-- functions that take it.
do $$
begin
  if fstore.citus_present() then
    revoke execute on function
      pg_catalog.pg_advisory_lock(integer, integer), pg_catalog.pg_advisory_lock_shared(integer, integer),
      pg_catalog.pg_advisory_xact_lock(integer, integer), pg_catalog.pg_advisory_xact_lock_shared(integer, integer),
      pg_catalog.pg_try_advisory_lock(integer, integer), pg_catalog.pg_try_advisory_lock_shared(integer, integer),
      pg_catalog.pg_try_advisory_xact_lock(integer, integer),
      pg_catalog.pg_try_advisory_xact_lock_shared(integer, integer),
      pg_catalog.pg_advisory_unlock(integer, integer), pg_catalog.pg_advisory_unlock_shared(integer, integer)
      from public;
    grant execute on function
      pg_catalog.pg_advisory_xact_lock(integer, integer), pg_catalog.pg_advisory_xact_lock_shared(integer, integer)
      to fstore_control;
  end if;
end $$;
