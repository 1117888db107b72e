-- Monitors: drift checks that run by themselves inside the server, with pg_cron, in the
-- rights of the person who created them.
--
--   select fstore.create_monitor('activity_drift', 42, '{"up_to_commit": 12}', '"last 1 day"', '1h');
--   select * from fstore.monitor_runs;      -- under RLS
--   listen fstore_alerts;                   -- {"alert": 7, "project": "fraud", "monitor": "activity_drift"}
--
-- How a monitor runs (docs/monitors.md has the why):
-- * One pg_cron job per monitor, logged in as its creator (a background worker: no password,
--   no TCP, no superuser anywhere in that session): `select fstore.run_monitor(ID)`. It
--   computes the drift SECURITY INVOKER, so RLS and row policies decide the rows, and hands
--   plain values to fstore.record_monitor_run (SECURITY DEFINER), which stores them only
--   for a pg_cron worker of the creator and sends NOTIFY fstore_alerts for a drifted run.
-- * A creator who leaves the project stops their monitors at once (fstore.remove_member calls
--   fstore.stop_member_monitors); one who is blocked, loses their certificates or whose name
--   now belongs to a later membership is stopped by the next run (fstore.record_monitor_run
--   checks before it stores anything), and a dropped or NOLOGIN role cannot even be logged
--   in by pg_cron (PostgreSQL 15 checks rolcanlogin for background workers too).
-- * One platform job, scheduled here by the superuser, calls fstore_cron.sync_monitors()
--   every minute: it makes pg_cron's jobs match the active monitors. It calls no function of
--   fstore_control's (code that ran in a superuser's session could RESET ROLE): it reads
--   fstore.monitors as a plain table (checked to be one, with built-in column types) and passes
--   values to pg_cron: a schedule checked by fstore.monitor_schedule and checked again here,
--   the creator's role name (session_user at creation; a login role of a project, never a
--   superuser) and a command made of the monitor's id.

set role fstore_control;

create or replace function fstore.check_monitor_name(p_name text) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_name is null or p_name !~ '^[a-z][a-z0-9_]{0,62}$' then
    raise exception 'invalid monitor name %: use 1-63 characters a-z, 0-9 and _, starting with a letter',
      coalesce(quote_literal(left(p_name, 80)), 'NULL') using errcode = '22023';
  end if;
  return p_name;
end $$;
comment on function fstore.check_monitor_name(text) is
  'Return the name if it is a valid monitor name; else an error that names it.';

create or replace function fstore.check_cron_field(p_field text, p_low integer, p_high integer) returns boolean
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
  v_item text;
  v_m text[];
begin
  foreach v_item in array string_to_array(p_field, ',') loop
    v_m := regexp_match(v_item, '^(\*|([0-9]{1,2})(-([0-9]{1,2}))?)(/([0-9]{1,2}))?$');
    if v_m is null
       or v_m[2] is not null and (v_m[2]::integer < p_low or v_m[2]::integer > p_high)
       or v_m[4] is not null and (v_m[4]::integer < v_m[2]::integer or v_m[4]::integer > p_high)
       or v_m[6] is not null and v_m[6]::integer < 1 then
      return false;
    end if;
  end loop;
  return p_field <> '';
end $$;
comment on function fstore.check_cron_field(text,integer,integer) is
  'True when one field of a cron expression is a comma list of *, N or N-M (each optionally /STEP) within [low, high].';

create or replace function fstore.monitor_schedule(p_every text) returns text
language plpgsql immutable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_every text := lower(btrim(coalesce(p_every, '')));
  v_m text[];
  v_n integer;
  v_fields text[];
begin
  v_m := regexp_match(v_every, '^([0-9]{1,3})\s*([mhd])$');
  if v_m is not null then
    v_n := v_m[1]::integer;
    if v_m[2] = 'm' and v_n between 1 and 59 then
      return case when v_n = 1 then '* * * * *' else format('*/%s * * * *', v_n) end;
    elsif v_m[2] = 'h' and v_n between 1 and 23 then
      return case when v_n = 1 then '0 * * * *' else format('0 */%s * * *', v_n) end;
    elsif v_m[2] = 'd' and v_n between 1 and 31 then
      return case when v_n = 1 then '0 0 * * *' else format('0 0 */%s * *', v_n) end;
    end if;
    raise exception 'invalid schedule %: minutes go from 1m to 59m, hours from 1h to 23h, days from 1d to 31d',
      quote_literal(p_every) using errcode = '22023';
  end if;
  case v_every
    when '@hourly' then return '0 * * * *';
    when '@daily' then return '0 0 * * *';
    when '@weekly' then return '0 0 * * 0';
    when '@monthly' then return '0 0 1 * *';
    else null;
  end case;
  v_fields := regexp_split_to_array(v_every, '\s+');
  if length(v_every) <= 100 and cardinality(v_fields) = 5
     and fstore.check_cron_field(v_fields[1], 0, 59) and fstore.check_cron_field(v_fields[2], 0, 23)
     and fstore.check_cron_field(v_fields[3], 1, 31) and fstore.check_cron_field(v_fields[4], 1, 12)
     and fstore.check_cron_field(v_fields[5], 0, 7) then
    return array_to_string(v_fields, ' ');
  end if;
  raise exception 'invalid schedule %: use 1m, 5m, 1h, 1d (a number and m, h or d), @hourly, @daily, @weekly, @monthly or a cron expression of five fields (minute hour day-of-month month day-of-week) made of numbers, *, -, / and commas, e.g. ''*/15 * * * *''',
    coalesce(quote_literal(left(p_every, 80)), 'NULL') using errcode = '22023';
end $$;
comment on function fstore.monitor_schedule(text) is
  'The cron expression of a monitor''s --every: 1m..59m (every N minutes), 1h..23h (on the hour, every N hours), 1d..31d (at midnight UTC, every N days), @hourly/@daily/@weekly/@monthly, or a five-field cron expression (checked field by field: numbers in range, *, ranges, steps, lists). Anything else is refused by name.';

create or replace function fstore.resolve_monitor_window(p_spec jsonb, p_at timestamptz) returns jsonb
language sql stable set search_path = pg_catalog, pg_temp as $$
  select case when p_spec ? 'last' then
    (p_spec - 'last' - 'before') || jsonb_build_object(
      'from', p_at - coalesce((p_spec->>'before')::interval, interval '0') - (p_spec->>'last')::interval,
      'to', p_at - coalesce((p_spec->>'before')::interval, interval '0'))
  else p_spec end
$$;
comment on function fstore.resolve_monitor_window(jsonb,timestamp with time zone) is
  'A monitor''s window as fstore.feature_drift takes it, at time p_at: {"last": L, "before": B} becomes event_time in [p_at - B - L, p_at - B) ({"from", "to"}); other keys are kept; a window without "last" is returned as it is.';

create or replace function fstore.check_monitor_window(p_spec jsonb, p_label text) returns jsonb
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_spec jsonb := p_spec;
  v_m text[];
  v_last interval;
  v_before interval;
begin
  if jsonb_typeof(v_spec) = 'string' then
    v_m := regexp_match(btrim(v_spec #>> '{}'), '^last\s+(.+?)(\s+before\s+(.+))?$', 'i');
    if v_m is null then
      raise exception '% window %: write ''last INTERVAL'' or ''last INTERVAL before INTERVAL'' (e.g. ''last 1 day'', ''last 7 days before 1 day''), or give a drift window',
        p_label, quote_literal(left(v_spec #>> '{}', 80)) using errcode = '22023';
    end if;
    v_spec := jsonb_build_object('last', v_m[1])
              || case when v_m[3] is not null then jsonb_build_object('before', v_m[3]) else '{}' end;
  end if;
  if jsonb_typeof(v_spec) is distinct from 'object' then
    raise exception '% window must be a drift window object or ''last INTERVAL [before INTERVAL]''', p_label
      using errcode = '22023';
  end if;
  if v_spec ? 'before' and not v_spec ? 'last' then
    raise exception '% window: "before" goes with "last" (last 7 days before 1 day)', p_label using errcode = '22023';
  end if;
  if v_spec ? 'last' then
    if v_spec ?| array['from', 'to'] then
      raise exception '% window: "last" sets from and to itself; give one or the other', p_label using errcode = '22023';
    end if;
    begin
      v_last := (v_spec->>'last')::interval;
      v_before := coalesce((v_spec->>'before')::interval, interval '0');
    exception when others then
      raise exception '% window: last and before must be intervals such as ''1 day'' or ''90 minutes'', not % / %',
        p_label, quote_literal(left(v_spec->>'last', 80)), coalesce(quote_literal(left(v_spec->>'before', 80)), '-')
        using errcode = '22023';
    end;
    if v_last <= interval '0' or v_before < interval '0' then
      raise exception '% window: last must be a positive interval and before not negative', p_label
        using errcode = '22023';
    end if;
    v_spec := v_spec || jsonb_build_object('last', v_last::text)
              || case when v_spec ? 'before' then jsonb_build_object('before', v_before::text) else '{}' end;
  end if;
  perform fstore.check_drift_window(fstore.resolve_monitor_window(v_spec, now()), p_label);
  return v_spec;
end $$;
comment on function fstore.check_monitor_window(jsonb,text) is
  'A monitor''s window, checked and normalised: a drift window object (commit, commits, up_to_commit, after_commit, from, to), one with "last" (and "before") intervals relative to each run, or the text ''last INTERVAL [before INTERVAL]''. An error names the window (p_label) and what is wrong.';

-- Why a monitor's creator may no longer run it (NULL: they may). Not a definer: called by
-- the definers below, as fstore_control, which owns the tables.
create or replace function fstore.monitor_creator_problem(p_project text, p_role text, p_since timestamptz) returns text
language sql stable set search_path = pg_catalog, fstore, pg_temp as $$
  select case
    when not exists (select 1 from fstore.members m
                      where m.project = p_project and m.role_name = p_role and m.added_at = p_since)
      then format('its creator %s is no longer a member of project %s', p_role, p_project)
    when not exists (select 1 from pg_catalog.pg_roles r where r.rolname = p_role and r.rolcanlogin)
      then format('its creator %s may not log in (blocked)', p_role)
    when not exists (select 1 from fstore.certificates c
                      where c.role_name = p_role and c.kind <> 'service' and c.revoked_at is null
                        and c.not_before <= now() and c.not_after > now())
      then format('its creator %s has no live certificate (each one is revoked or expired)', p_role)
  end
$$;
comment on function fstore.monitor_creator_problem(text,text,timestamp with time zone) is
  'Why a monitor may not run any more: its creator left the project (or the name now belongs to a later membership), may not log in, or holds no unrevoked, unexpired certificate. NULL when it may run.';

drop function if exists fstore.create_monitor(text,bigint,jsonb,jsonb,text,text[],text,integer,double precision);
create or replace function fstore.create_monitor(
  p_name text, p_feature_group_id bigint, p_baseline jsonb, p_current jsonb, p_every text,
  p_features text[] default null, p_slice_by text default null, p_bins integer default 10,
  p_threshold float8 default 0.2, p_thresholds jsonb default null, p_sample_rows bigint default null
) returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_project text := fstore.session_project();
  v_fg fstore.feature_groups;
  v_label text;
  v_table regclass;
  v_since timestamptz;
  v_baseline jsonb;
  v_current jsonb;
  v_schedule text;
  v_id bigint;
  v_thresholds jsonb;
begin
  if v_project is null then
    raise exception 'permission denied: only a member of a project may create monitors (not %)', session_user
      using errcode = '42501';
  end if;
  perform fstore.check_monitor_name(p_name);
  select * into v_fg from fstore.feature_groups where id = p_feature_group_id;
  if not found or not fstore.visible_feature_group(p_feature_group_id) then
    raise exception 'feature group % does not exist or is not visible to %', p_feature_group_id, session_user
      using errcode = 'P0002';
  end if;
  v_label := v_fg.project || '.' || v_fg.name || '@' || v_fg.version;
  v_table := format('%I.%I', v_fg.project, v_fg.offline_table)::regclass;
  if not has_any_column_privilege(session_user, v_table, 'SELECT') then
    raise exception 'permission denied: % may not read feature group %, so may not monitor it', session_user, v_label
      using errcode = '42501';
  end if;
  perform fstore.check_group_features(v_fg.id, p_features);
  if p_slice_by is not null then
    perform fstore.check_slice_by(v_fg.id, p_slice_by, p_features, 'measure');
  end if;
  perform fstore.check_readable_features(v_fg.id, p_features);
  if p_bins is null or p_bins < 2 or p_bins > 1000 then
    raise exception 'bins must be between 2 and 1000, not %', coalesce(p_bins::text, 'NULL') using errcode = '22023';
  end if;
  if p_threshold is null or p_threshold < 0 then
    raise exception 'threshold must be a number >= 0, not %', coalesce(p_threshold::text, 'NULL') using errcode = '22023';
  end if;
  if p_sample_rows is not null and p_sample_rows < 1000 then
    raise exception 'sample_rows must be at least 1000, not %', p_sample_rows using errcode = '22023';
  end if;
  v_thresholds := nullif(fstore.check_drift_thresholds(v_fg.id, p_thresholds), '{}');  -- plain JSON numbers
  v_baseline := fstore.check_monitor_window(p_baseline, 'baseline');
  v_current := fstore.check_monitor_window(p_current, 'current');
  v_schedule := fstore.monitor_schedule(p_every);
  select m.added_at into v_since from fstore.members m where m.role_name = session_user::text;
  perform fstore.lock_project(v_project);
  if exists (select 1 from fstore.monitors where project = v_project and name = p_name) then
    raise exception 'monitor % already exists in project %', p_name, v_project using errcode = '42710';
  end if;
  insert into fstore.monitors (project, name, feature_group_id, baseline, current, every, schedule, features, slice_by,
                               bins, threshold, thresholds, sample_rows, created_by, creator_since, client_serial)
  values (v_project, p_name, v_fg.id, v_baseline, v_current, btrim(p_every), v_schedule, p_features, p_slice_by,
          p_bins, p_threshold, v_thresholds, p_sample_rows, session_user::text, v_since, fstore.session_serial())
  returning id into v_id;
  perform fstore.audit(v_project, 'create_monitor',
                       jsonb_build_object('monitor', p_name, 'id', v_id, 'feature_group', v_label, 'schedule', v_schedule));
  return v_id;
end $$;
comment on function fstore.create_monitor(text,bigint,jsonb,jsonb,text,text[],text,integer,double precision,jsonb,bigint) is
  'Create monitor p_name of the caller''s project: every p_every (fstore.monitor_schedule) the drift of feature group p_feature_group_id between p_baseline and p_current (fstore.check_monitor_window) is measured by fstore.feature_drift in the caller''s rights by their own pg_cron job (logged in as session_user), stored, and alerted on (NOTIFY fstore_alerts) when a feature drifts: PSI >= p_threshold, or any measure of p_thresholds ({feature or "*": {measure: value}}, over the group''s stored drift thresholds); p_sample_rows measures larger windows on samples. With p_slice_by (a column the caller may read), each run measures drift per slice too (fstore.slice_drift) and a drifted slice alerts like a drifted feature. The caller must be able to read the group (and each named feature). Jobs are scheduled within a minute. Audited.';

create or replace function fstore.drop_monitor(p_name text) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_project text := fstore.session_project();
  v_monitor fstore.monitors;
begin
  select * into v_monitor from fstore.monitors where project = v_project and name = p_name;
  if not found then
    raise exception 'monitor % does not exist in project % (or is not visible to %)',
      coalesce(quote_literal(left(p_name, 80)), 'NULL'), coalesce(v_project, '-'), session_user using errcode = 'P0002';
  end if;
  if v_monitor.created_by <> session_user::text and not exists (
       select 1 from fstore.members m
        where m.project = v_project and m.role_name = session_user::text and m.project_role = 'data_owner') then
    raise exception 'permission denied: only its creator % or a Data Owner of project % may drop monitor %',
      v_monitor.created_by, v_project, p_name using errcode = '42501';
  end if;
  delete from fstore.monitors where id = v_monitor.id;
  perform fstore.unschedule_monitor_jobs(array[v_monitor.id]);
  perform fstore.audit(v_project, 'drop_monitor', jsonb_build_object('monitor', p_name, 'id', v_monitor.id,
                                                                     'created_by', v_monitor.created_by));
end $$;
comment on function fstore.drop_monitor(text) is
  'Drop a monitor of the caller''s project with its runs and alerts (its creator or a Data Owner); its pg_cron job goes with it. Audited.';

create or replace function fstore.monitor_stop_reason(p_monitor_id bigint) returns text
language plpgsql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_monitor fstore.monitors;
begin
  select * into v_monitor from fstore.monitors where id = p_monitor_id and project = fstore.session_project();
  if not found then
    raise exception 'monitor % does not exist or is not visible to %', p_monitor_id, session_user using errcode = 'P0002';
  end if;
  if not v_monitor.active then
    return coalesce(v_monitor.stopped_reason, 'stopped');
  end if;
  return fstore.monitor_creator_problem(v_monitor.project, v_monitor.created_by, v_monitor.creator_since);
end $$;
comment on function fstore.monitor_stop_reason(bigint) is
  'Why a monitor of the caller''s project does not run (stopped, or its creator lost membership, login or certificate), or NULL.';

create or replace function fstore.monitor_results_visible(p_monitor_id bigint) returns boolean
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select exists (select 1 from fstore.monitors m
                  where m.id = p_monitor_id and m.project = fstore.session_project()
                    and (m.created_by = session_user::text or fstore.statistics_visible(m.feature_group_id)))
$$;
comment on function fstore.monitor_results_visible(bigint) is
  'A monitor''s runs and alerts describe the rows its creator may read: they are shown to the creator, and to members of its project no row policy of the group binds (as stored statistics are).';

create or replace function fstore.record_monitor_run(
  p_monitor_id bigint, p_started_at timestamptz, p_baseline jsonb, p_current jsonb, p_baseline_rows bigint,
  p_current_rows bigint, p_results jsonb, p_drifted text[], p_slices jsonb, p_flagged text[], p_error text
) returns text
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_monitor fstore.monitors;
  v_reason text;
  v_status text;
  v_run bigint;
  v_alert bigint;
begin
  -- a project-user logs in only over TLS with a client certificate (pg_hba: hostssl cert, local reject), so
  -- a session of theirs without one, and not a client's, is a background worker: pg_cron's, running their job
  if fstore.session_serial() is not null or pg_catalog.inet_client_addr() is not null
     or (select a.backend_type from pg_catalog.pg_stat_activity a where a.pid = pg_catalog.pg_backend_pid())
        = 'client backend' then
    raise exception 'permission denied: a monitor''s runs are recorded only by its own pg_cron job'
      using errcode = '42501';
  end if;
  select * into v_monitor from fstore.monitors where id = p_monitor_id for update;
  if not found or v_monitor.created_by <> session_user::text then
    raise exception 'monitor % does not exist or was not created by %', p_monitor_id, session_user using errcode = 'P0002';
  end if;
  if not v_monitor.active then
    return 'stopped';
  end if;
  v_reason := fstore.monitor_creator_problem(v_monitor.project, v_monitor.created_by, v_monitor.creator_since);
  if v_reason is not null then
    update fstore.monitors set active = false, stopped_at = clock_timestamp(), stopped_reason = v_reason
     where id = v_monitor.id;
    insert into fstore.monitor_runs (monitor_id, started_at, status, error)
    values (v_monitor.id, p_started_at, 'stopped', v_reason);
    return 'stopped';
  end if;
  v_status := case when p_error is not null then 'error'
                   when cardinality(p_drifted) > 0 or cardinality(p_flagged) > 0 then 'drifted' else 'ok' end;
  insert into fstore.monitor_runs (monitor_id, started_at, status, baseline, current, baseline_rows, current_rows,
                                   drifted_features, flagged_slices, results, slices, error)
  values (v_monitor.id, p_started_at, v_status, p_baseline, p_current, p_baseline_rows, p_current_rows,
          coalesce(p_drifted, '{}'), coalesce(p_flagged, '{}'), coalesce(p_results, '[]'), p_slices, p_error)
  returning id into v_run;
  if v_status = 'drifted' then
    insert into fstore.monitor_alerts (monitor_id, run_id, drifted_features, flagged_slices)
    values (v_monitor.id, v_run, coalesce(p_drifted, '{}'), coalesce(p_flagged, '{}'))
    returning id into v_alert;
    -- any session of the database may LISTEN (PostgreSQL has no privilege for it), so the payload
    -- says only which alert of which project, and when: which monitor, group and features drifted
    -- is read under RLS (fstore.monitor_alerts), by those who may
    perform pg_catalog.pg_notify('fstore_alerts', jsonb_build_object(
      'alert', v_alert, 'monitor_id', v_monitor.id, 'project', v_monitor.project, 'run_at', p_started_at)::text);
  end if;
  return v_status;
end $$;
comment on function fstore.record_monitor_run(bigint,timestamp with time zone,jsonb,jsonb,bigint,bigint,jsonb,text[],jsonb,text[],text) is
  'Store one run of a monitor, from fstore.run_monitor in the monitor''s own pg_cron job only (a session of the creator without a client certificate: a pg_cron background worker, since project-users log in only with one): ok, drifted (then an alert and NOTIFY fstore_alerts {"alert", "monitor_id", "project", "run_at"}: no names of groups or features, no data values, since every session may LISTEN) or error; a creator who lost membership, login or certificate stops the monitor instead, and the run says why.';

create or replace function fstore.run_monitor(p_monitor_id bigint) returns text
language plpgsql volatile
set search_path = pg_catalog, fstore, pg_temp
set jit = off
as $$
declare
  v_monitor fstore.monitors;
  v_started timestamptz := clock_timestamp();
  v_baseline jsonb;
  v_current jsonb;
  v_results jsonb;
  v_drifted text[];
  v_baseline_rows bigint;
  v_current_rows bigint;
  v_slices jsonb;
  v_flagged text[];
begin
  select * into v_monitor from fstore.monitors where id = p_monitor_id;
  if not found or v_monitor.created_by <> session_user::text then
    raise exception 'monitor % does not exist or was not created by %', p_monitor_id, session_user using errcode = 'P0002';
  end if;
  if fstore.monitor_stop_reason(p_monitor_id) is not null then  -- recorded (and stopped) by the definer
    return fstore.record_monitor_run(p_monitor_id, v_started, null, null, null, null, null, '{}', null, '{}', null);
  end if;
  v_baseline := fstore.resolve_monitor_window(v_monitor.baseline, v_started);
  v_current := fstore.resolve_monitor_window(v_monitor.current, v_started);
  begin
    if v_monitor.slice_by is null then
      select coalesce(jsonb_agg(to_jsonb(d) - 'ordinality' order by d.ordinality), '[]'),
             coalesce(array_agg(d.feature order by d.ordinality) filter (where d.drifted), '{}'),
             max(d.baseline_rows), max(d.current_rows)
        into v_results, v_drifted, v_baseline_rows, v_current_rows
        from fstore.feature_drift(
               p_feature_group_id => v_monitor.feature_group_id, p_baseline => v_baseline, p_current => v_current,
               -- what the creator may read now (a feature made sensitive since is left out, or refused by name)
               p_features => fstore.check_readable_features(v_monitor.feature_group_id, v_monitor.features),
               p_bins => v_monitor.bins, p_threshold => v_monitor.threshold, p_thresholds => v_monitor.thresholds,
               p_sample_rows => v_monitor.sample_rows) with ordinality d;
    else
      -- per slice (fstore.slice_drift, in the creator's rights): the whole gives the results and the
      -- drifted features; each slice its rows, whether it drifted and which features did
      drop table if exists pg_temp._fstore_monitor_slices;
      execute 'create temporary table _fstore_monitor_slices on commit drop as
               select * from fstore.slice_drift(p_feature_group_id => $1, p_slice_by => $2, p_baseline => $3,
                                                p_current => $4, p_features => $5, p_bins => $6, p_threshold => $7,
                                                p_thresholds => $8, p_sample_rows => $9) with ordinality d'
        using v_monitor.feature_group_id, v_monitor.slice_by, v_baseline, v_current,
              fstore.check_readable_features(v_monitor.feature_group_id, v_monitor.features),
              v_monitor.bins, v_monitor.threshold, v_monitor.thresholds, v_monitor.sample_rows;
      select coalesce(jsonb_agg(to_jsonb(d) - 'ordinality' - 'slice' - 'slice_kind' - 'slice_baseline_rows'
                                - 'slice_current_rows' - 'folded_values' - 'slice_drifted' order by d.ordinality), '[]'),
             coalesce(array_agg(d.feature order by d.ordinality) filter (where d.drifted), '{}'),
             max(d.baseline_rows), max(d.current_rows)
        into v_results, v_drifted, v_baseline_rows, v_current_rows
        from _fstore_monitor_slices d where d.slice_kind = 'all';
      select coalesce(jsonb_agg(jsonb_build_object('slice', x.slice, 'kind', x.slice_kind,
                                                   'baseline_rows', x.nb, 'current_rows', x.nc,
                                                   'folded_values', x.folded, 'drifted', x.drifted,
                                                   'drifted_features', x.features) order by x.first), '[]'),
             coalesce(array_agg(coalesce(x.slice, '(null)') order by x.first) filter (where x.drifted), '{}')
        into v_slices, v_flagged
        from (select d.slice, d.slice_kind, max(d.slice_baseline_rows) as nb, max(d.slice_current_rows) as nc,
                     max(d.folded_values) as folded, bool_or(d.slice_drifted) as drifted, min(d.ordinality) as first,
                     coalesce(array_agg(d.feature order by d.ordinality) filter (where d.drifted), '{}') as features
                from _fstore_monitor_slices d where d.slice_kind <> 'all'
               group by d.slice, d.slice_kind) x;
    end if;
  exception when others then
    return fstore.record_monitor_run(p_monitor_id, v_started, v_baseline, v_current, null, null, '[]', '{}', null,
                                     '{}', sqlerrm);
  end;
  return fstore.record_monitor_run(p_monitor_id, v_started, v_baseline, v_current, v_baseline_rows, v_current_rows,
                                   v_results, v_drifted, v_slices, coalesce(v_flagged, '{}'), null);
end $$;
comment on function fstore.run_monitor(bigint) is
  'One run of a monitor, as its pg_cron job calls it (logged in as the creator): the drift between its windows (relative ones resolved now) by fstore.feature_drift, with the caller''s rights (SECURITY INVOKER: RLS and row policies decide the rows, column grants the features), under the monitor''s threshold, thresholds and sample_rows and the group''s stored drift thresholds; stored by fstore.record_monitor_run. A failing drift is recorded as an error run.';

-- pg_cron's scheduler stops for everyone (it exits and restarts in a loop) while any job names a
-- role that does not exist, so a monitor's job goes in the transaction that drops its creator's
-- role: fstore_control may delete the fstore_monitor_ID jobs of cron.job, and nothing else there.
create or replace function fstore.unschedule_monitor_jobs(p_monitor_ids bigint[]) returns integer
language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_count integer;
begin
  delete from cron.job j
   where j.jobname like 'fstore\_monitor\_%'
     and j.jobname = any (array(select 'fstore_monitor_' || i from unnest(p_monitor_ids) i));
  get diagnostics v_count = row_count;
  return v_count;
end $$;
comment on function fstore.unschedule_monitor_jobs(bigint[]) is
  'Delete the pg_cron jobs of these monitors now (fstore_control only: fstore.drop_monitor, fstore.stop_member_monitors, fstore.delete_project), rather than at the scheduler''s next minute: pg_cron stops scheduling anything while a job names a dropped role. Returns how many.';
revoke all on function fstore.unschedule_monitor_jobs(bigint[]) from public;

-- A member leaves: their monitors stop now (fstore.remove_member, as fstore_control).
create or replace function fstore.stop_member_monitors(p_project text, p_role text, p_reason text) returns integer
language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_id bigint;
  v_count integer := 0;
begin
  for v_id in select id from fstore.monitors where project = p_project and created_by = p_role and active
               order by id for update loop
    perform fstore.stop_monitor(v_id, p_reason);
    v_count := v_count + 1;
  end loop;
  perform fstore.unschedule_monitor_jobs(array(select id from fstore.monitors where created_by = p_role));
  return v_count;
end $$;
comment on function fstore.stop_member_monitors(text,text,text) is
  'Stop every active monitor a role created in a project, each with a stopped run saying why, and delete their pg_cron jobs (fstore.remove_member calls it, as fstore_control, before it drops the role). Returns how many.';

-- A share ends: the other project's monitors of this project's groups stop now (fstore.unshare_project).
create or replace function fstore.stop_shared_monitors(p_project text, p_with text) returns integer
language plpgsql volatile set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_ids bigint[];
  v_id bigint;
begin
  select coalesce(array_agg(m.id order by m.id), '{}') into v_ids
    from fstore.monitors m join fstore.feature_groups g on g.id = m.feature_group_id
   where m.project = p_with and g.project = p_project and m.active;
  foreach v_id in array v_ids loop
    perform fstore.stop_monitor(v_id, format('project %s is no longer shared with project %s', p_project, p_with));
  end loop;
  perform fstore.unschedule_monitor_jobs(v_ids);
  return cardinality(v_ids);
end $$;
comment on function fstore.stop_shared_monitors(text,text) is
  'Stop the monitors project p_with keeps on feature groups of p_project, saying why, and delete their pg_cron jobs (fstore.unshare_project calls it, as fstore_control). Returns how many.';
revoke all on function fstore.stop_shared_monitors(text,text) from public;

create or replace function fstore.stop_monitor(p_monitor_id bigint, p_reason text) returns void
language sql volatile set search_path = pg_catalog, fstore, pg_temp as $$
  update fstore.monitors set active = false, stopped_at = clock_timestamp(), stopped_reason = p_reason
   where id = p_monitor_id and active;
  insert into fstore.monitor_runs (monitor_id, started_at, status, error)
  select p_monitor_id, clock_timestamp(), 'stopped', p_reason where exists (select 1 from fstore.monitors where id = p_monitor_id);
$$;
comment on function fstore.stop_monitor(bigint,text) is
  'Stop a monitor for good, with a run that says why (fstore.stop_member_monitors, as fstore_control).';

drop policy if exists visible on fstore.monitors;
create policy visible on fstore.monitors for select
  using ((select fstore.session_is_admin()) or project = (select fstore.session_project()));
drop policy if exists visible on fstore.monitor_runs;
create policy visible on fstore.monitor_runs for select using (fstore.monitor_results_visible(monitor_id));
drop policy if exists visible on fstore.monitor_alerts;
create policy visible on fstore.monitor_alerts for select using (fstore.monitor_results_visible(monitor_id));

grant execute on function
  fstore.check_monitor_name(text), fstore.check_cron_field(text,integer,integer), fstore.monitor_schedule(text),
  fstore.resolve_monitor_window(jsonb,timestamp with time zone), fstore.check_monitor_window(jsonb,text),
  fstore.create_monitor(text,bigint,jsonb,jsonb,text,text[],text,integer,double precision,jsonb,bigint),
  fstore.drop_monitor(text), fstore.monitor_stop_reason(bigint), fstore.monitor_results_visible(bigint),
  fstore.record_monitor_run(bigint,timestamp with time zone,jsonb,jsonb,bigint,bigint,jsonb,text[],jsonb,text[],text),
  fstore.run_monitor(bigint)
  to public;
reset role;

-- The platform's scheduler: the superuser's own code, in the superuser's own schema. It runs
-- nothing of fstore_control's (no function call, no view: fstore.monitors must be a plain table
-- with built-in column types) and hands pg_cron values only.
create or replace procedure fstore_cron.sync_monitors()
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_job record;
  v_names text[];
  v_schedules text[];
  v_users text[];
  v_commands text[];
  v_i integer;
begin
  lock table fstore.monitors in access share mode;
  if (select c.relkind from pg_catalog.pg_class c where c.oid = 'fstore.monitors'::pg_catalog.regclass) <> 'r'
     or exists (select 1 from pg_catalog.pg_attribute a
                 where a.attrelid = 'fstore.monitors'::pg_catalog.regclass
                   and a.attname in ('id', 'schedule', 'created_by', 'active')
                   and a.atttypid not in ('bigint'::pg_catalog.regtype, 'text'::pg_catalog.regtype,
                                          'boolean'::pg_catalog.regtype)) then
    raise exception 'fstore.monitors is not the plain table fstore_cron.sync_monitors reads: no job changed';
  end if;
  -- the jobs wanted, as plain arrays (no temporary table: pgaudit would log its DDL every minute)
  select coalesce(array_agg('fstore_monitor_' || m.id order by m.id), '{}'),
         coalesce(array_agg(m.schedule order by m.id), '{}'), coalesce(array_agg(m.created_by order by m.id), '{}'),
         coalesce(array_agg('select fstore.run_monitor(' || m.id || ')' order by m.id), '{}')
    into v_names, v_schedules, v_users, v_commands
    from fstore.monitors m
    join pg_catalog.pg_roles r on r.rolname = m.created_by
   where m.active
     -- a project's login role (p__user), never a superuser or one that bypasses RLS
     and m.created_by ~ '^[a-z][a-z0-9_]{0,29}[a-z0-9]__[a-z][a-z0-9_]*$'
     and r.rolcanlogin and not r.rolsuper and not r.rolreplication and not r.rolbypassrls
     and m.schedule ~ '^[0-9*/,-]+( [0-9*/,-]+){4}$';
  for v_job in select j.jobid, j.jobname, j.schedule, j.username, j.command from cron.job j
                where j.jobname like 'fstore\_monitor\_%' loop
    v_i := array_position(v_names, v_job.jobname);
    if v_i is null or v_schedules[v_i] <> v_job.schedule or v_users[v_i] <> v_job.username
       or v_commands[v_i] <> v_job.command then
      perform cron.unschedule(v_job.jobid);
    end if;
  end loop;
  for v_i in 1 .. cardinality(v_names) loop
    if not exists (select 1 from cron.job j where j.jobname = v_names[v_i]) then
      perform cron.schedule_in_database(v_names[v_i], v_schedules[v_i], v_commands[v_i], current_database(),
                                        v_users[v_i], true);
    end if;
  end loop;
  delete from cron.job_run_details where end_time < now() - interval '7 days';
end $$;
comment on procedure fstore_cron.sync_monitors() is
  'Every minute (pg_cron job fstore_monitors, the superuser''s): make pg_cron''s jobs fstore_monitor_ID match the active monitors of fstore.monitors (read as a plain table, no fstore function called): one per monitor, logged in as its creator (a project login role, never a superuser), running select fstore.run_monitor(ID) on its schedule; jobs of dropped or stopped monitors, or whose creator may not log in, are unscheduled. Keeps 7 days of job run details.';

revoke all on procedure fstore_cron.sync_monitors() from public;

-- pg_cron's own interface is the platform's: tenants may not read its jobs, schedule their own or
-- change anyone's (cron.schedule is executable by PUBLIC as installed, cron.job readable)
revoke all on schema cron from public;
revoke all on all tables in schema cron from public;
revoke all on all sequences in schema cron from public;
revoke all on all functions in schema cron from public;
-- fstore_control deletes monitors' jobs with the roles it drops (fstore.unschedule_monitor_jobs)
grant usage on schema cron to fstore_control;
grant select, delete on cron.job to fstore_control;
drop policy if exists fstore_monitor_jobs on cron.job;
create policy fstore_monitor_jobs on cron.job to fstore_control using (jobname like 'fstore\_monitor\_%');

select cron.schedule('fstore_monitors', '* * * * *', 'call fstore_cron.sync_monitors()');
