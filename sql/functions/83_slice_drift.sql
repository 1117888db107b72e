-- Drift per slice: the drift of each feature within each value of one of a feature group's
-- columns (current slice against baseline slice), with the caller's rights (SECURITY
-- INVOKER): row-level security and row policies decide the rows, so a reader bound by a
-- policy gets slices of the rows they may read only, and a hidden row's value never appears.
-- Small slices are folded into '(other)' as fstore.slice_statistics folds them.
--
--   select * from fstore.slice_drift(42, 'country', '{"commit": 1}', '{"commit": 2}');

set role fstore_control;

create or replace function fstore.slice_drift(
  p_feature_group_id bigint, p_slice_by text, p_baseline jsonb, p_current jsonb, p_features text[] default null,
  p_bins integer default 10, p_threshold float8 default 0.2, p_thresholds jsonb default null,
  p_sample_rows bigint default null, p_min_slice_rows integer default 30
) returns table (
  slice text, slice_kind text, slice_baseline_rows bigint, slice_current_rows bigint, folded_values bigint,
  slice_drifted boolean,
  feature text, kind text, baseline_rows bigint, current_rows bigint,
  baseline_null_rate float8, current_null_rate float8, baseline_mean float8, current_mean float8,
  psi float8, js_distance float8, ks float8, new_values bigint, drifted boolean,
  wasserstein float8, thresholds jsonb, tripped text[], estimated boolean
) language plpgsql volatile  -- the rows read go into temporary tables
set search_path = pg_catalog, public, fstore, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  c_floor constant float8 := 0.0001;
  c_top_values constant integer := 50;
  v_fg fstore.feature_groups;
  v_label text;
  v_table text;
  v_b text;
  v_c text;
  v_call jsonb;
  v_names text[] := '{}';
  v_kinds text[] := '{}';
  v_columns text := '';
  v_per_slice integer;        -- the features of each slice: v_names[1:v_per_slice] (the whole: all of v_names)
  v_features text[];
  v_name text;
  v_kind text;
  v_slices integer;
  v_slice record;
  v_row record;
  v_nb bigint;
  v_nc bigint;
  v_sampled boolean := false;
  b_commit bigint; b_commits bigint[]; b_up_to bigint; b_after bigint; b_from timestamptz; b_to timestamptz;
  c_commit bigint; c_commits bigint[]; c_up_to bigint; c_after bigint; c_from timestamptz; c_to timestamptz;
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  v_label := v_fg.project || '.' || v_fg.name || '@' || v_fg.version;
  v_table := format('%I.%I', v_fg.project, v_fg.offline_table);
  perform fstore.check_slice_options(p_min_slice_rows, p_bins);
  perform fstore.check_drift_window(p_baseline, 'baseline'), fstore.check_drift_window(p_current, 'current');
  if p_threshold is null then
    raise exception 'threshold must be a number, not NULL' using errcode = '22023';
  end if;
  if p_sample_rows is not null and p_sample_rows < 1000 then
    raise exception 'sample_rows must be at least 1000, not %', p_sample_rows using errcode = '22023';
  end if;
  perform fstore.check_slice_by(v_fg.id, p_slice_by, p_features, 'measure');
  v_features := coalesce(p_features, fstore.check_readable_features(v_fg.id, null));
  v_call := fstore.check_drift_thresholds(v_fg.id, p_thresholds);
  select w.* into b_commit, b_commits, b_up_to, b_after, b_from, b_to from fstore.drift_window_values(p_baseline) w;
  select w.* into c_commit, c_commits, c_up_to, c_after, c_from, c_to from fstore.drift_window_values(p_current) w;
  v_b := fstore.drift_window_sql(p_baseline, 1, v_fg.event_time);
  v_c := fstore.drift_window_sql(p_current, 7, v_fg.event_time);

  -- the features measured in each slice (never the slice column itself), then the slice
  -- column as the whole's last feature when it is a feature the caller did not leave out
  for v_name, v_kind in
    select f.name, fstore.statistics_kind(a.atttypid)
      from fstore.features f
      join pg_attribute a on a.attrelid = v_table::regclass and a.attname = f.name and not a.attisdropped
     where f.feature_group_id = v_fg.id and not f.is_key and f.name = any(v_features) and f.name <> p_slice_by
     order by coalesce(array_position(p_features, f.name), f.position)
  loop
    v_names := v_names || v_name;
    v_kinds := v_kinds || v_kind;
  end loop;
  v_per_slice := coalesce(cardinality(v_names), 0);
  if p_features is null and exists (select 1 from fstore.features f where f.feature_group_id = v_fg.id
                                       and f.name = p_slice_by and not f.is_key) then
    v_names := v_names || p_slice_by;
    v_kinds := v_kinds || (select fstore.statistics_kind(a.atttypid) from pg_attribute a
                            where a.attrelid = v_table::regclass and a.attname = p_slice_by);
  end if;
  v_columns := (select coalesce(string_agg(format(', %s as c%s', case k when 'numeric' then format('%I::float8', n)
                                                                     when 'vector' then format('vector_norm(%I)', n)
                                                                     when 'temporal' then format('%I', n)
                                                                     else format('%I::text', n) end, i), '' order by i), '')
                  from unnest(v_names, v_kinds) with ordinality u(n, k, i));

  -- the slices: each value's rows in each window; a value with fewer than p_min_slice_rows
  -- rows in either window is folded into '(other)' (id 0 is the whole)
  drop table if exists pg_temp._fstore_slice_drift_map;
  execute format('create temp table _fstore_slice_drift_map on commit drop as
    with sizes as (select _k, _n, count(*) filter (where _b) as nb, count(*) filter (where _c) as nc
                     from (select %1$I::text as _k, %1$I is null as _n, (%2$s) as _b, (%3$s) as _c
                             from %4$s where (%2$s) or (%3$s)) s group by 1, 2),
         kinds as (select *, case when least(nb, nc) < $13 then ''other'' when _n then ''null'' else ''value'' end as kind
                     from sizes)
    select coalesce(_k, '''') as key, _n as is_null, nb, nc, kind,
           case kind when ''other'' then ''(other)'' when ''null'' then null else _k end as label,
           case when kind = ''other'' then -1
                else row_number() over (partition by kind = ''other'' order by kind = ''null'', nb + nc desc, _k)::integer
           end as id
      from kinds', p_slice_by, v_b, v_c, v_table)
    using b_commit, b_commits, b_up_to, b_after, b_from, b_to, c_commit, c_commits, c_up_to, c_after, c_from, c_to,
          p_min_slice_rows;
  select count(distinct id) into v_slices from pg_temp._fstore_slice_drift_map;
  if v_slices > fstore.max_slices() then
    raise exception 'slice_by % of feature group % makes % slices of at least % rows (at most % are allowed): slice by a column with fewer values, or raise min_slice_rows',
      p_slice_by, v_label, v_slices, p_min_slice_rows, fstore.max_slices() using errcode = '22023';
  end if;
  select coalesce(sum(nb), 0), coalesce(sum(nc), 0) into v_nb, v_nc from pg_temp._fstore_slice_drift_map;
  if v_nb = 0 or v_nc = 0 then
    raise exception 'the % window % holds no rows of feature group % (visible to %)',
      case when v_nb = 0 then 'baseline' else 'current' end,
      case when v_nb = 0 then p_baseline else p_current end, v_label, session_user
      using errcode = '22023';
  end if;
  v_sampled := p_sample_rows is not null and greatest(v_nb, v_nc) > p_sample_rows;

  -- one pass over the offline table: both windows' rows (sampled as fstore.feature_drift samples
  -- them), with their slice, into the temporary table the measures read
  drop table if exists pg_temp._fstore_drift_rows;
  drop table if exists pg_temp._fstore_slice_drift_rows;
  execute format('create temp table _fstore_drift_rows on commit drop as
                    select m.id as _fstore_slice, w.* from (
                      select %5$I::text as _fstore_key, %5$I is null as _fstore_null,
                             (%2$s) and ($13 is null or random() < $13) as in_base,
                             (%3$s) and ($14 is null or random() < $14) as in_cur %4$s
                        from %1$s where (%2$s) or (%3$s)) w
                    join pg_temp._fstore_slice_drift_map m on m.key = coalesce(w._fstore_key, '''')
                                                          and m.is_null = w._fstore_null
                   where in_base or in_cur',
                 v_table, v_b, v_c, v_columns, p_slice_by)
    using b_commit, b_commits, b_up_to, b_after, b_from, b_to, c_commit, c_commits, c_up_to, c_after, c_from, c_to,
          case when v_sampled and v_nb > p_sample_rows then p_sample_rows::float8 / v_nb end,
          case when v_sampled and v_nc > p_sample_rows then p_sample_rows::float8 / v_nc end;

  drop table if exists pg_temp._fstore_slice_drift_out;
  create temp table _fstore_slice_drift_out (
    id integer, i integer, feature text, kind text, baseline_null_rate float8, current_null_rate float8,
    baseline_mean float8, current_mean float8, psi float8, js_distance float8, ks float8, wasserstein float8,
    new_values bigint, thresholds jsonb, tripped text[], drifted boolean) on commit drop;
  -- the whole first (id 0), then each slice (its rows copied out of the whole's)
  for v_slice in select 0 as id union all (select distinct id from pg_temp._fstore_slice_drift_map order by 1) loop
    if v_slice.id <> 0 then
      drop table if exists pg_temp._fstore_drift_rows;
      create temp table _fstore_drift_rows on commit drop as
        select * from pg_temp._fstore_slice_drift_rows r where r._fstore_slice = v_slice.id;
    end if;
    for v_row in select * from fstore.drift_row_measures(
                   case when v_slice.id = 0 then v_kinds else v_kinds[1:v_per_slice] end, p_bins, c_floor, c_top_values)
    loop
      insert into pg_temp._fstore_slice_drift_out
      select v_slice.id, v_row.i, v_names[v_row.i], v_kinds[v_row.i], v_row.baseline_null_rate, v_row.current_null_rate,
             v_row.baseline_mean, v_row.current_mean, v_row.psi, v_row.js_distance, v_row.ks, v_row.wasserstein,
             v_row.new_values, t.thresholds, d.tripped, d.drifted
        from (select fstore.effective_drift_thresholds(v_fg.options->'drift_thresholds', v_call, p_threshold,
                                                       v_names[v_row.i]) as thresholds) t,
             fstore.drift_tripped(t.thresholds, jsonb_build_object('psi', v_row.psi, 'js_distance', v_row.js_distance,
               'ks', v_row.ks, 'wasserstein', v_row.wasserstein, 'new_values', v_row.new_values,
               'null_rate_change', abs(v_row.current_null_rate - v_row.baseline_null_rate))) d;
    end loop;
    if v_slice.id = 0 then  -- the whole's rows, by slice
      alter table pg_temp._fstore_drift_rows rename to _fstore_slice_drift_rows;
      create index on pg_temp._fstore_slice_drift_rows (_fstore_slice);
      analyze pg_temp._fstore_slice_drift_rows;
    end if;
  end loop;

  return query
    with slices as (select id, max(kind) as kind, max(label) as label, sum(nb)::bigint as nb, sum(nc)::bigint as nc,
                           case when max(kind) = 'other' then count(*) end as folded
                      from pg_temp._fstore_slice_drift_map group by id
                    union all
                    select 0, 'all', '(all)', v_nb, v_nc, null)
    select s.label, s.kind, s.nb, s.nc, s.folded,
           coalesce(bool_or(o.drifted) over (partition by s.id), false),
           o.feature, o.kind, s.nb, s.nc, o.baseline_null_rate, o.current_null_rate, o.baseline_mean, o.current_mean,
           o.psi, o.js_distance, o.ks, o.new_values, o.drifted, o.wasserstein, o.thresholds, o.tripped, v_sampled
      from slices s join pg_temp._fstore_slice_drift_out o on o.id = s.id
     order by s.kind = 'all' desc, s.kind = 'other', s.kind = 'null', s.nb + s.nc desc, s.label, o.i;
  drop table if exists pg_temp._fstore_drift_rows;
  drop table pg_temp._fstore_slice_drift_rows;
  drop table pg_temp._fstore_slice_drift_map;
  drop table pg_temp._fstore_slice_drift_out;
end $$;
comment on function fstore.slice_drift(bigint,text,jsonb,jsonb,text[],integer,double precision,jsonb,bigint,integer) is
  'Drift per slice: the measures of fstore.feature_drift (same windows, bins, thresholds with the same precedence, sampling) within each value of column p_slice_by (a key or feature of the group), current slice against baseline slice, with the caller''s rights: row-level security decides the rows, so slices cover only what the caller may read. A p_slice_by or feature the caller may not read (a sensitive feature) is refused by name (fstore.check_readable_features); an unknown one too. One row per slice and feature: first the whole (slice ''(all)'', slice_kind all; its features are the slices'' and, when p_features is NULL, the slice column itself), then the values (value) by size, the NULLs (null, slice NULL) and the folded slices (other): every value with fewer than p_min_slice_rows rows (default 30) in either window is folded into one slice ''(other)'' whose folded_values says how many values it holds. slice_baseline_rows and slice_current_rows: the slice''s rows in each window (so are baseline_rows and current_rows); slice_drifted: any feature of the slice drifted. Features: p_features (never p_slice_by), default every feature the caller may read. More than 1000 slices is refused. Writes temporary tables: VOLATILE, needs a read-write transaction.';

grant execute on function
  fstore.slice_drift(bigint,text,jsonb,jsonb,text[],integer,double precision,jsonb,bigint,integer) to public;
reset role;
