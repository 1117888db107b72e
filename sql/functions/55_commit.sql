-- The one commit pipeline: rows staged in a (temporary) table become one commit of
-- a feature group: validation, offline append, online newer-only upsert, commit
-- record and statistics, all in the caller's transaction (readers see all of it or none).

set role fstore_control;

create or replace function fstore.commit_step_done(p_commit bigint, p_step text, p_started timestamptz, p_detail text default '')
returns timestamptz language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
begin
  raise debug 'fstore commit %: % % ms%', p_commit, p_step,
    round(extract(epoch from clock_timestamp() - p_started) * 1000), coalesce(' ' || nullif(p_detail, ''), '');
  return clock_timestamp();
end $$;
comment on function fstore.commit_step_done(bigint,text,timestamp with time zone,text) is
  'Report one step of a commit (RAISE DEBUG: seen with client_min_messages = debug1, e.g. "fstore commit 42: offline_append 5120 ms bulk, 1 index dropped") and return the time the next step starts.';

-- Steps, all in the caller's transaction (readers see all of a commit or none of it):
--  1. one commit at a time per feature group: the group's row lock (fstore.lock_feature_group,
--     which nobody but its writers can take), held until the transaction ends, so commit ids follow commit order and a merge or
--     incremental commit sees the rows of the one before it (in READ COMMITTED, the
--     default of dbt and of fstore's Python API; a REPEATABLE READ transaction's
--     snapshot predates the wait, so merge there can still duplicate rows);
--  2. mode: append (all rows), merge (rows whose (keys, event_time) are not stored yet,
--     one per (keys, event_time)) or incremental (rows after the latest committed event
--     time);
--  3. validation (fstore.validate_commit): a strict failure raises 23514, nothing written;
--  4. offline append. Small batches go in index order (keys, event_time desc), each row
--     maintaining the point-in-time index. A large batch (at least as many heap bytes
--     as the offline table already holds; measured: rebuilding wins up to about twice
--     that table size, so this leaves a margin) takes the bulk path: the table's
--     non-unique indexes are dropped, the rows appended, and the indexes recreated
--     from their own definitions (pg_get_indexdef, same names), built bottom-up from a
--     sort (maintenance_work_mem at least 1GB, parallel maintenance workers as the
--     server allows). DROP INDEX holds an ACCESS EXCLUSIVE lock on the offline table
--     until the transaction ends: readers of THIS feature group's offline table wait
--     for the commit (readers of its online table and of other groups do not). The lock
--     is waited for 2 s at most (past deadlock_timeout, so an autovacuum of the table is
--     cancelled): when the table is still being read, the commit goes row by row rather
--     than queue behind the readers and hold up every later one. The DDL
--     needs the table's owner: a caller acting as the project's owner role does it
--     directly, a member of that role (a Data Owner) does it under SET LOCAL ROLE
--     <project>__owner for the DDL only (the rows are written as the caller); any other
--     writer (a read-write share's Data Owner) takes the per-row path;
--  5. online newer-only upsert: an older event_time never replaces a newer one, ties go
--     to the later commit;
--  6. statistics (fstore.batch_statistics) and the commit record (fstore.finish_commit).
-- With client_min_messages = debug1 each step reports its duration (RAISE DEBUG).
create or replace function fstore.commit_feature_rows(
  p_feature_group_id bigint, p_staging regclass, p_mode text default 'append',
  p_source text default 'python', p_validation jsonb default '{}', p_record_empty boolean default true
) returns bigint language plpgsql volatile
set search_path = pg_catalog, fstore, pg_temp
set work_mem = '64MB'
set jit = off
as $$
declare
  c_bulk_maintenance_work_mem constant bigint := 1024 * 1024 * 1024;
  c_bulk_lock_wait constant text := '2s';  -- more than deadlock_timeout (1s): autovacuum gets cancelled
  v_fg fstore.feature_groups;
  v_commit bigint;
  v_cols text;
  v_keys text;
  v_key_match text;
  v_key_join text;
  v_updates text;
  v_batch regclass := p_staging;
  v_offline regclass;
  v_owner text;
  v_bulk boolean;
  v_as_owner boolean := false;
  v_caller_role text;
  v_caller_maintenance_work_mem text;
  v_caller_lock_timeout text := current_setting('lock_timeout');
  v_detail text := 'row by row';
  v_index_names text[];
  v_index_defs text[];
  v_i integer;
  v_rows bigint;
  v_online_rows bigint := 0;
  v_min timestamptz;
  v_max timestamptz;
  v_watermark timestamptz;
  v_stats jsonb := '{}';
  v_validation jsonb := coalesce(p_validation, '{}');
  v_step timestamptz;
  v_early text[] := '{}';  -- the steps before the commit record exists, reported with its id
  v_message text;
  v_empty boolean;
  v_distributed boolean;
  v_written bigint[];
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  if p_mode is null or p_mode not in ('append', 'merge', 'incremental') then
    raise exception 'invalid commit mode %: use append, merge or incremental', coalesce(quote_literal(p_mode), 'NULL')
      using errcode = '22023';
  end if;
  v_step := clock_timestamp();
  -- one commit at a time per feature group (step 1 above), until this transaction ends
  perform fstore.lock_feature_group(p_feature_group_id);
  v_early := v_early || format('lock %s ms', round(extract(epoch from clock_timestamp() - v_step) * 1000));
  v_step := clock_timestamp();

  select string_agg(format('%I', name), ', ' order by position) into v_cols
    from fstore.features where feature_group_id = p_feature_group_id;
  select string_agg(format('%I', k), ', '), string_agg(format('o.%1$I = s.%1$I', k), ' and '),
         string_agg(format('s.%1$I = l.%1$I', k), ' and ')
    into v_keys, v_key_match, v_key_join from unnest(v_fg.entity_keys) k;
  v_offline := format('%I.%I', v_fg.project, v_fg.offline_table)::regclass;
  v_distributed := fstore.is_distributed(v_offline);

  if p_mode = 'merge' then
    -- re-running the same data adds nothing: skip rows whose (keys, event_time) exist
    if to_regclass('pg_temp._fstore_batch') is not null then drop table pg_temp._fstore_batch; end if;
    if v_distributed then
      -- Citus refuses a join of the distributed history with this session's temp table: the
      -- batch's distinct (keys, event_time) go to the workers as a MATERIALIZED CTE (an
      -- intermediate result), the shards return those already stored, and the anti-join with
      -- them runs here on the coordinator. All before fstore_writer writes the shards.
      if to_regclass('pg_temp._fstore_stored') is not null then drop table pg_temp._fstore_stored; end if;
      execute format(
        'create temp table _fstore_stored on commit drop as
           with b as materialized (select distinct %1$s, %2$I from %3$s)
           select distinct %7$s, o.%2$I from %4$s o join b s on %5$s and o.%2$I = s.%2$I',
        v_keys, v_fg.event_time, p_staging, v_offline, v_key_match, null,
        (select string_agg(format('o.%I', k), ', ') from unnest(v_fg.entity_keys) k));
      execute format(
        'create temp table _fstore_batch on commit drop as
           select distinct on (%1$s, %2$I) %3$s, %2$I from %4$s s
            where not exists (select 1 from pg_temp._fstore_stored o where %5$s and o.%2$I = s.%2$I)',
        v_keys, v_fg.event_time, v_cols, p_staging, v_key_match);
      drop table pg_temp._fstore_stored;
    else
      execute format(
        'create temp table _fstore_batch on commit drop as
           select distinct on (%1$s, %2$I) %3$s, %2$I from %4$s s
            where not exists (select 1 from %5$s o where %6$s and o.%2$I = s.%2$I)',
        v_keys, v_fg.event_time, v_cols, p_staging, v_offline, v_key_match);
    end if;
    v_batch := 'pg_temp._fstore_batch'::regclass;
  elsif p_mode = 'incremental' then
    select max(max_event_time) into v_watermark from fstore.commits
     where feature_group_id = p_feature_group_id;
    if v_watermark is not null then
      if to_regclass('pg_temp._fstore_batch') is not null then drop table pg_temp._fstore_batch; end if;
      execute format('create temp table _fstore_batch on commit drop as
                        select %1$s, %2$I from %3$s where %2$I > $1', v_cols, v_fg.event_time, p_staging)
        using v_watermark;
      v_batch := 'pg_temp._fstore_batch'::regclass;
    end if;
  end if;
  v_early := v_early || format('select %s ms %s', round(extract(epoch from clock_timestamp() - v_step) * 1000), p_mode);
  v_step := clock_timestamp();

  -- validation before anything is written: a strict failure raises (SQLSTATE 23514)
  if fstore.has_validation_rules(v_fg.options) then
    v_validation := fstore.validate_commit(p_feature_group_id, p_staging, v_batch);
  end if;
  v_early := v_early || format('validation %s ms', round(extract(epoch from clock_timestamp() - v_step) * 1000));

  -- nothing new (a re-run, a merge of stored rows, an incremental run past nothing): with
  -- p_record_empty false no commit is begun at all, so no empty commit is recorded
  if not coalesce(p_record_empty, true) then
    execute format('select not exists (select 1 from %s)', v_batch) into v_empty;
    if v_empty then
      return null;
    end if;
  end if;
  v_commit := fstore.begin_commit(p_feature_group_id, p_source);
  foreach v_message in array v_early loop
    raise debug 'fstore commit %: %', v_commit, v_message;
  end loop;
  v_step := clock_timestamp();

  -- offline append: the bulk path for a batch as large as the table, else row by row
  v_owner := fstore.owner_role(v_fg.project);
  v_bulk := pg_relation_size(v_batch) > 0 and pg_relation_size(v_batch) >= pg_relation_size(v_offline);
  if v_distributed then
    v_bulk := false;  -- the shell table is empty (pg_relation_size 0); its indexes live on the shards
  end if;
  if v_bulk and current_user::text <> v_owner then
    v_as_owner := pg_has_role(session_user, v_owner, 'MEMBER');
    v_bulk := v_as_owner;
  end if;
  if v_bulk then
    if v_as_owner then
      v_caller_role := current_setting('role');
      perform set_config('role', v_owner, true);
    end if;
    -- the lock DROP INDEX needs, waited for c_bulk_lock_wait at most: queued behind a long
    -- read, this commit would hold up every later reader (and a reader waiting for another
    -- of its own connections, as sharded point-in-time joins do, would never finish)
    begin
      perform set_config('lock_timeout', c_bulk_lock_wait, true);
      execute format('lock table %s in access exclusive mode', v_offline);
    exception when lock_not_available then
      v_bulk := false;
      v_detail := 'row by row: the offline table is in use';
    end;
    perform set_config('lock_timeout', v_caller_lock_timeout, true);
    if v_bulk then
      select array_agg(c.relname::text order by c.relname), array_agg(pg_get_indexdef(i.indexrelid) order by c.relname)
        into v_index_names, v_index_defs
        from pg_index i join pg_class c on c.oid = i.indexrelid
       where i.indrelid = v_offline and i.indisvalid and not i.indisunique
         and not exists (select 1 from pg_constraint k where k.conindid = i.indexrelid);
      for v_i in 1 .. coalesce(cardinality(v_index_names), 0) loop
        execute format('drop index %I.%I', v_fg.project, v_index_names[v_i]);
      end loop;
    end if;
    if v_as_owner then
      perform set_config('role', v_caller_role, true);
    end if;
    v_bulk := v_bulk and v_index_names is not null;
  end if;
  if v_bulk then
    execute format('insert into %1$s (%2$s, %3$I, _commit_id) select %2$s, %3$I, $1 from %4$s',
                   v_offline, v_cols, v_fg.event_time, v_batch) using v_commit;
    get diagnostics v_rows = row_count;
    v_step := fstore.commit_step_done(v_commit, 'offline_append', v_step,
                                      format('bulk, %s index(es) dropped', cardinality(v_index_names)));
    if v_as_owner then
      perform set_config('role', v_owner, true);
    end if;
    -- a SET LOCAL inside a function lasts until the transaction ends: put it back ourselves
    v_caller_maintenance_work_mem := current_setting('maintenance_work_mem');
    if pg_size_bytes(v_caller_maintenance_work_mem) < c_bulk_maintenance_work_mem then
      perform set_config('maintenance_work_mem', (c_bulk_maintenance_work_mem / 1024)::text || 'kB', true);
    end if;
    for v_i in 1 .. cardinality(v_index_defs) loop
      execute v_index_defs[v_i];
    end loop;
    perform set_config('maintenance_work_mem', v_caller_maintenance_work_mem, true);
    if v_as_owner then
      perform set_config('role', v_caller_role, true);
    end if;
    v_step := fstore.commit_step_done(v_commit, 'offline_index_build', v_step);
  elsif v_distributed then
    -- a distributed group (sql/functions/41_distribution.sql): the rows, with the commit's
    -- column types, in a temporary table of this session that fstore.write_commit_batch
    -- (fstore_writer, the one role the shards take rows from) writes offline and online
    if to_regclass('pg_temp._fstore_commit_batch') is not null then drop table pg_temp._fstore_commit_batch; end if;
    execute format('create temp table _fstore_commit_batch (like %s) on commit drop', v_offline);
    execute format('insert into pg_temp._fstore_commit_batch (%1$s, %2$I, _commit_id) select %1$s, %2$I, $1 from %3$s',
                   v_cols, v_fg.event_time, v_batch) using v_commit;
    grant select on pg_temp._fstore_commit_batch to fstore_writer;
    v_written := fstore.write_commit_batch(p_feature_group_id, 'pg_temp._fstore_commit_batch'::regclass);
    v_rows := v_written[1];
    v_online_rows := v_written[2];
    drop table pg_temp._fstore_commit_batch;
    v_step := fstore.commit_step_done(v_commit, 'offline_online_write', v_step, 'distributed');
  else
    -- in index order (keys, event_time desc): far fewer index pages touched
    execute format('insert into %1$s (%2$s, %3$I, _commit_id) select %2$s, %3$I, $1 from %4$s order by %5$s, %3$I desc',
                   v_offline, v_cols, v_fg.event_time, v_batch, v_keys) using v_commit;
    get diagnostics v_rows = row_count;
    v_step := fstore.commit_step_done(v_commit, 'offline_append', v_step, v_detail);
  end if;

  if v_fg.online and v_rows > 0 and not v_distributed then
    select string_agg(format('%1$I = excluded.%1$I', name), ', ') into v_updates
      from fstore.features where feature_group_id = p_feature_group_id and not is_key;
    v_updates := concat_ws(', ', v_updates, format('%1$I = excluded.%1$I', v_fg.event_time),
                           '_commit_id = excluded._commit_id');
    if v_bulk and not exists (select 1 from pg_policy where polrelid = v_offline and not polpermissive
                                                        and polcmd in ('r', '*')) then
      -- bulk path: the point-in-time index was just rebuilt, so the latest row of every key
      -- is the first index entry of that key (keys, event_time desc, _commit_id desc); a skip
      -- scan finds them without another pass over the batch: one index probe per key, which
      -- returns that first entry whole (measured at 10M rows, 100k keys: 5.5 s with two
      -- probes per key, one for the next key and one for its latest row). Only rows of this
      -- commit go online: a key whose latest row is older is already there. (With restrictive
      -- row policies on what the caller reads, they might not see every row: then the batch
      -- is read as below.)
      execute format(
        'with recursive k as (
           (select %3$s, %4$I, _commit_id from %6$s order by %5$s, %4$I desc, _commit_id desc limit 1)
           union all
           (select n.* from k cross join lateral
              (select %11$s, c.%4$I, c._commit_id from %6$s c where (%9$s) > (%10$s)
                order by %9$s, c.%4$I desc, c._commit_id desc limit 1) n)
         )
         insert into %1$I.%2$I as o (%3$s, %4$I, _commit_id)
         select %3$s, %4$I, _commit_id from k where _commit_id = $1
         on conflict (%5$s) do update set %7$s where o.%4$I <= excluded.%4$I',
        v_fg.project, v_fg.online_table, v_cols, v_fg.event_time, v_keys, v_offline, v_updates,
        null,
        (select string_agg(format('c.%I', k), ', ') from unnest(v_fg.entity_keys) k),
        (select string_agg(format('k.%I', k), ', ') from unnest(v_fg.entity_keys) k),
        (select string_agg(format('c.%I', name), ', ' order by position) from fstore.features
          where feature_group_id = p_feature_group_id))
        using v_commit;
      get diagnostics v_online_rows = row_count;
    else
      -- newer-only: an older event_time never replaces a newer one; ties go to the later commit.
      -- The latest row per key is found by hashing (max event_time per key, joined back), not by
      -- sorting the whole batch; DISTINCT ON only breaks ties inside the batch.
      execute format(
        'insert into %1$I.%2$I as o (%3$s, %4$I, _commit_id)
           select distinct on (%5$s) %3$s, %4$I, $1
             from (select s.* from %6$s s
                     join (select %5$s, max(%4$I) as _latest from %6$s group by %5$s) l
                       on %8$s and s.%4$I = l._latest) s
            order by %5$s
         on conflict (%5$s) do update set %7$s where o.%4$I <= excluded.%4$I',
        v_fg.project, v_fg.online_table, v_cols, v_fg.event_time, v_keys, v_batch, v_updates, v_key_join)
        using v_commit;
      get diagnostics v_online_rows = row_count;
    end if;
  end if;
  v_step := fstore.commit_step_done(v_commit, 'online_upsert', v_step, case when v_bulk then 'skip scan' end);

  if v_fg.statistics_enabled and v_rows > 0 then
    v_stats := fstore.batch_statistics(p_feature_group_id, v_batch);
    v_min := (v_stats #>> array[v_fg.event_time, 'min'])::timestamptz;
    v_max := (v_stats #>> array[v_fg.event_time, 'max'])::timestamptz;
  elsif v_rows > 0 then
    execute format('select min(%1$I), max(%1$I) from %2$s', v_fg.event_time, v_batch) into v_min, v_max;
  end if;
  perform fstore.finish_commit(v_commit, v_rows, v_online_rows, v_min, v_max, v_validation, v_stats);
  v_step := fstore.commit_step_done(v_commit, 'statistics_and_record', v_step);
  return v_commit;
end $$;
comment on function fstore.commit_feature_rows(bigint,regclass,text,text,jsonb,boolean) is
  'Commit the rows staged in p_staging to a feature group; returns the commit id. A commit that writes no rows is recorded (with its validation) unless p_record_empty is false: then nothing is recorded and it returns NULL (dbt''s no-op runs leave no trace).';

grant execute on function
  fstore.commit_step_done(bigint,text,timestamp with time zone,text),
  fstore.commit_feature_rows(bigint,regclass,text,text,jsonb,boolean)
  to public;
reset role;
