-- Bias by slice: statistics of a feature group's rows per value of one of its columns
-- (each slice's distribution against the whole, by PSI), and the label rate of a training
-- dataset per value of one of its columns (each slice against the rest). Both run with the
-- caller's rights (SECURITY INVOKER): row-level security and row policies decide which rows
-- there are, so a reader bound by a policy gets slices of the rows they may read only, and a
-- hidden row's slice value never appears.
--
--   select * from fstore.slice_statistics(42, 'country');
--   select * from fstore.training_dataset_slices('fraud_train', 'country');

set role fstore_control;

-- Slices smaller than p_min_slice_rows are folded into one slice, '(other)' of kind
-- 'other'; NULL values of the slice column are the slice of kind 'null' (slice text NULL).
-- More than this many slices of sufficient size is refused (slice by a column with fewer
-- values).
create or replace function fstore.max_slices() returns integer
language sql immutable set search_path = pg_catalog, pg_temp as $$ select 1000 $$;
comment on function fstore.max_slices() is
  'The most slices a slice_by column may make (after folding the small ones): 1000.';

create or replace function fstore.check_slice_options(p_min_slice_rows integer, p_bins integer) returns void
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_min_slice_rows is null or p_min_slice_rows < 1 then
    raise exception 'min_slice_rows must be a positive integer, not %', coalesce(p_min_slice_rows::text, 'NULL')
      using errcode = '22023';
  end if;
  if p_bins is null or p_bins < 2 or p_bins > 1000 then
    raise exception 'bins must be between 2 and 1000, not %', coalesce(p_bins::text, 'NULL') using errcode = '22023';
  end if;
end $$;
comment on function fstore.check_slice_options(integer,integer) is
  'Refuse a min_slice_rows below 1 and bins outside [2, 1000], naming the option.';

create or replace function fstore.check_slice_by(p_feature_group_id bigint, p_slice_by text, p_features text[],
                                                 p_purpose text)
returns void language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups := fstore.feature_group_by_id(p_feature_group_id);
  v_label text := v_fg.project || '.' || v_fg.name || '@' || v_fg.version;
  v_bad text;
begin
  if p_slice_by is null or not exists (select 1 from fstore.features f
                                        where f.feature_group_id = v_fg.id and f.name = p_slice_by) then
    raise exception 'feature group % has no column % to slice by; slice by one of: %', v_label,
      coalesce(quote_literal(left(p_slice_by, 80)), 'NULL'),
      (select string_agg(f.name, ', ' order by f.position) from fstore.features f where f.feature_group_id = v_fg.id)
      using errcode = '42703';
  end if;
  select string_agg(f, ', ') into v_bad from unnest(p_features) f
   where f = p_slice_by
      or not exists (select 1 from fstore.features x where x.feature_group_id = v_fg.id and x.name = f and not x.is_key);
  if v_bad is not null then
    raise exception 'feature group % has no feature % to % per slice (not a key, nor the slice_by column %)',
      v_label, v_bad, p_purpose, p_slice_by using errcode = '42703';
  end if;
  -- a column the caller may not read (a sensitive feature): refused by name, before any row is read
  perform fstore.check_readable_features(v_fg.id, p_slice_by || coalesce(p_features, '{}'));
end $$;
comment on function fstore.check_slice_by(bigint,text,text[],text) is
  'Refuses, by name, a slice_by column that is not a column of the group (listing the ones it has), a feature that is a key, unknown or the slice column itself (p_purpose says what was asked: describe, measure), and any of them the session may not read (fstore.check_readable_features). Slice statistics, slice drift and monitors ask it.';


-- The two-sided p-value of a standard normal z: erfc(|z| / sqrt 2), by the Chebyshev fit of
-- Numerical Recipes' erfcc (fractional error below 1.2e-7 everywhere). PostgreSQL 15 has no erf.
create or replace function fstore.normal_two_sided_p(p_z float8) returns float8
language sql immutable strict parallel safe set search_path = pg_catalog, pg_temp as $$
  select case when x > 26 then 0::float8
    else t * exp(-x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
             + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
    end
    from (select abs(p_z) / sqrt(2::float8) as x) a, lateral (select 1 / (1 + 0.5 * x) as t) b
$$;
comment on function fstore.normal_two_sided_p(double precision) is
  'Two-sided p-value of a standard normal statistic z, P(|Z| >= |z|) = erfc(|z|/sqrt(2)) (Numerical Recipes'' erfcc, fractional error < 1.2e-7).';

create or replace function fstore.slice_statistics(
  p_feature_group_id bigint, p_slice_by text, p_features text[] default null, p_commit bigint default null,
  p_min_slice_rows integer default 30, p_threshold float8 default 0.2, p_bins integer default 10
) returns table (
  slice text, slice_kind text, rows bigint, share float8, folded_values bigint, features jsonb,
  psi_max float8, flagged_features text[], flagged boolean
) language plpgsql volatile
set search_path = pg_catalog, fstore, pg_temp
set work_mem = '64MB'
set jit = off
as $$
#variable_conflict use_column
declare
  c_floor constant float8 := 0.0001;
  c_top_values constant integer := 50;   -- PSI bins of a categorical feature (the rest lumped), as drift
  c_shown_values constant integer := 5;  -- top values shown per slice
  v_fg fstore.feature_groups;
  v_label text;
  v_table text;
  v_columns text[] := '{}';
  v_names text[] := '{}';
  v_kinds text[] := '{}';
  v_name text;
  v_kind text;
  v_total bigint;
  v_slices integer;
  v_fractions float8[];
  v_join constant text := 'from pg_temp._fstore_slice_rows t join pg_temp._fstore_slice_map m
                             on m.key = coalesce(t._fstore_key, '''') and m.is_null = t._fstore_null';
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  v_label := v_fg.project || '.' || v_fg.name || '@' || v_fg.version;
  v_table := format('%I.%I', v_fg.project, v_fg.offline_table);
  perform fstore.check_slice_options(p_min_slice_rows, p_bins);
  if p_threshold is null then
    raise exception 'threshold must be a number, not NULL' using errcode = '22023';
  end if;
  perform fstore.check_slice_by(v_fg.id, p_slice_by, p_features, 'describe');
  if p_commit is not null and not exists (select 1 from fstore.commits c
                                           where c.id = p_commit and c.feature_group_id = v_fg.id) then
    raise exception 'commit % is not a commit of feature group %', p_commit, v_label using errcode = 'P0002';
  end if;

  -- the features described: those asked for, or every non-key feature the caller may read
  for v_name, v_kind in
    select f.name, fstore.statistics_kind(a.atttypid)
      from fstore.features f
      join pg_attribute a on a.attrelid = v_table::regclass and a.attname = f.name and not a.attisdropped
     where f.feature_group_id = v_fg.id and not f.is_key and f.name <> p_slice_by
       and (p_features is not null and f.name = any(p_features)
            or p_features is null and has_column_privilege(v_table, f.name, 'SELECT'))
     order by coalesce(array_position(p_features, f.name), f.position)
  loop
    v_names := v_names || v_name;
    v_kinds := v_kinds || v_kind;
    v_columns := v_columns || case v_kind
      when 'numeric' then format('%I::float8 as %I', v_name, v_name)
      when 'categorical' then format('%I::text as %I', v_name, v_name)
      when 'temporal' then format('%I', v_name)
      else format('(%I is not null or null) as %I', v_name, v_name) end;  -- vectors: counted only
  end loop;

  -- the rows, read once (one snapshot), with the caller's rights
  drop table if exists pg_temp._fstore_slice_rows;
  drop table if exists pg_temp._fstore_slice_map;
  drop table if exists pg_temp._fstore_slice_stats;
  execute format('create temp table _fstore_slice_rows on commit drop as
                  select %1$I::text as _fstore_key, %1$I is null as _fstore_null%2$s from %3$s where %4$s',
                 p_slice_by, (select string_agg(', ' || c, '') from unnest(v_columns) c), v_table,
                 case when p_commit is null then 'true' else '_commit_id = $1' end)
    using p_commit;
  select count(*) into v_total from pg_temp._fstore_slice_rows;

  -- each slice value -> its slice (id 0 is the whole; small ones share the '(other)' id)
  create temp table _fstore_slice_map on commit drop as
  with sizes as (select _fstore_key, _fstore_null, count(*) as k from pg_temp._fstore_slice_rows group by 1, 2),
       kinds as (select *, case when k < p_min_slice_rows then 'other' when _fstore_null then 'null' else 'value' end
                           as kind from sizes)
  select coalesce(_fstore_key, '') as key, _fstore_null as is_null, k, kind,
         case kind when 'other' then '(other)' when 'null' then null else _fstore_key end as label,
         case when kind = 'other' then -1
              else row_number() over (partition by kind = 'other' order by kind = 'null', k desc, _fstore_key) end as id
    from kinds;
  select count(distinct id) into v_slices from pg_temp._fstore_slice_map;
  if v_slices > fstore.max_slices() then
    raise exception 'slice_by % of feature group % makes % slices of at least % rows (at most % are allowed): slice by a column with fewer values, or raise min_slice_rows',
      p_slice_by, v_label, v_slices, p_min_slice_rows, fstore.max_slices() using errcode = '22023';
  end if;

  -- per slice (and the whole, id 0) and feature: its statistics, and its PSI against the whole
  create temp table _fstore_slice_stats (id integer, feature text, stats jsonb) on commit drop;
  select array_agg(i::float8 / p_bins order by i) into v_fractions from generate_series(1, p_bins - 1) i;
  for i in 1 .. coalesce(array_length(v_names, 1), 0) loop
    v_name := v_names[i];
    v_kind := v_kinds[i];
    if v_kind = 'numeric' then
      -- bins at the whole's quantiles (as drift bins a baseline); PSI of each slice's bin shares
      execute format('
        with d as (select m.id, t.%1$I as v ' || v_join || '),
        edges as (select array(select distinct q from unnest(percentile_cont($1) within group (order by v)) q
                                where q is not null order by q) as e
                    from d where v is not null),
        binned as (select id, case when cardinality(e) > 0 then width_bucket(v, e) else 0 end as bin, count(*) as k
                     from d, edges where v is not null group by 1, 2),
        whole as (select bin, sum(k)::float8 / sum(sum(k)) over () as b from binned group by bin),
        part as (select id, bin, k::float8 / sum(k) over (partition by id) as c from binned),
        psi as (select s.id, sum((greatest(coalesce(p.c, 0), $2) - greatest(w.b, $2))
                                 * ln(greatest(coalesce(p.c, 0), $2) / greatest(w.b, $2))) as psi
                  from (select distinct id from binned) s cross join whole w
                  left join part p on p.id = s.id and p.bin = w.bin
                 group by s.id),
        moments as (select id, count(v) as n, count(*) - count(v) as nulls, avg(v) as mean, stddev_samp(v) as std,
                           min(v) as lo, max(v) as hi
                      from d group by grouping sets ((id), ()))
        insert into pg_temp._fstore_slice_stats
        select coalesce(m.id, 0), %2$L, jsonb_build_object(''kind'', ''numeric'', ''count'', m.n, ''nulls'', m.nulls,
                 ''mean'', m.mean, ''std'', m.std, ''min'', m.lo, ''max'', m.hi,
                 ''psi'', case when m.id is not null then p.psi end)
          from moments m left join psi p on p.id = m.id', v_name, v_name)
      using v_fractions, c_floor;
    elsif v_kind = 'categorical' then
      -- one bin per value, the most frequent over the whole (the rest in one bin), as drift
      execute format('
        with d as (select m.id, t.%1$I as v ' || v_join || '),
        counts as (select id, v, count(*) as k from d where v is not null group by 1, 2),
        ranked as (select v, sum(k) as k, row_number() over (order by sum(k) desc, v) as r from counts group by v),
        binned as (select c.id, case when r.r <= $1 then r.r else 0 end as bin, sum(c.k) as k
                     from counts c join ranked r using (v) group by 1, 2),
        whole as (select bin, sum(k)::float8 / sum(sum(k)) over () as b from binned group by bin),
        part as (select id, bin, k::float8 / sum(k) over (partition by id) as c from binned),
        psi as (select s.id, sum((greatest(coalesce(p.c, 0), $2) - greatest(w.b, $2))
                                 * ln(greatest(coalesce(p.c, 0), $2) / greatest(w.b, $2))) as psi
                  from (select distinct id from binned) s cross join whole w
                  left join part p on p.id = s.id and p.bin = w.bin
                 group by s.id),
        tops as (select id, jsonb_agg(jsonb_build_object(''value'', v, ''count'', k) order by k desc, v) as top
                   from (select id, v, k, row_number() over (partition by id order by k desc, v) as r from counts
                         union all
                         select 0, v, k, r from ranked) c
                  where r <= $3 group by id),
        moments as (select id, count(v) as n, count(*) - count(v) as nulls, count(distinct v) as distinct_values
                      from d group by grouping sets ((id), ()))
        insert into pg_temp._fstore_slice_stats
        select coalesce(m.id, 0), %2$L, jsonb_build_object(''kind'', ''categorical'', ''count'', m.n,
                 ''nulls'', m.nulls, ''distinct'', m.distinct_values,
                 ''top_values'', coalesce(t.top, ''[]''::jsonb), ''psi'', case when m.id is not null then p.psi end)
          from moments m left join psi p on p.id = m.id left join tops t on t.id = coalesce(m.id, 0)',
        v_name, v_name)
      using c_top_values, c_floor, c_shown_values;
    else
      -- temporal: count, nulls, min, max (time is not compared); vectors: count and nulls
      execute format('
        with d as (select m.id, t.%1$I as v ' || v_join || ')
        insert into pg_temp._fstore_slice_stats
        select coalesce(id, 0), %2$L, jsonb_build_object(''kind'', %3$L, ''count'', count(v),
                 ''nulls'', count(*) - count(v)) || %4$s
          from d group by grouping sets ((id), ())',
        v_name, v_name, v_kind,
        case when v_kind = 'temporal' then 'jsonb_build_object(''min'', min(v), ''max'', max(v))' else '''{}''::jsonb' end);
    end if;
  end loop;

  return query
    with slices as (select id, max(kind) as kind, max(label) as label, sum(k)::bigint as n,
                           count(*) filter (where kind = 'other') as folded
                      from pg_temp._fstore_slice_map group by id
                    union all
                    select 0, 'all', '(all)', v_total, null),
         described as (
           select s.id,
                  jsonb_object_agg(s.feature, case when s.id = 0 then s.stats else s.stats || jsonb_build_object(
                    'flagged', coalesce((s.stats->>'psi')::float8 >= p_threshold, false)) end) as described,
                  max((s.stats->>'psi')::float8) as worst,
                  array_agg(s.feature order by n.i) filter (where (s.stats->>'psi')::float8 >= p_threshold) as over
             from pg_temp._fstore_slice_stats s
             join unnest(v_names) with ordinality n(feature, i) on n.feature = s.feature
            group by s.id)
    select s.label, s.kind, s.n, s.n::float8 / nullif(v_total, 0), s.folded, coalesce(d.described, '{}'::jsonb),
           case when s.id <> 0 then d.worst end, coalesce(d.over, '{}'::text[]),
           s.id <> 0 and cardinality(coalesce(d.over, '{}'::text[])) > 0
      from slices s left join described d on d.id = s.id
     order by s.kind = 'all' desc, s.kind = 'other', s.kind = 'null', s.n desc, s.label;
  drop table pg_temp._fstore_slice_rows;
  drop table pg_temp._fstore_slice_map;
  drop table pg_temp._fstore_slice_stats;
end $$;
comment on function fstore.slice_statistics(bigint,text,text[],bigint,integer,double precision,integer) is
  'Statistics of a feature group''s offline rows (all of them, or commit p_commit''s) per value of column p_slice_by (a key or feature of the group), with the caller''s rights: row-level security decides the rows, so slices cover only what the caller may read. One row per slice, first the whole (slice_kind all), then the values (value) by size, the NULLs (null, slice NULL) and the folded slices (other): every value with fewer than p_min_slice_rows rows (default 30) is folded into one slice ''(other)'' whose folded_values says how many values it holds (their names are not listed). rows and share (of the whole). features: {feature: stats} for each non-key feature but p_slice_by (p_features: these only; default those the caller may read): numeric count (non-NULL), nulls, mean, std (sample, n - 1), min, max; categorical (text, boolean, ...) count, nulls, distinct, top_values [{value, count}] (the 5 most frequent); temporal count, nulls, min, max; vector count, nulls. Numeric and categorical features of a slice also get psi: the population stability index of the slice''s distribution against the whole''s, over the bins drift uses (numeric: p_bins bins at the whole''s quantiles; categorical: one bin per value, the 50 most frequent of the whole, the rest in one bin; shares floored at 0.0001; NULLs not binned), and flagged: psi >= p_threshold (default 0.2). psi_max is the largest psi of the slice, flagged_features those flagged, flagged whether any is. More than 1000 slices is refused.';

-- Label rate per slice of a stored training dataset, each slice against the rest.
create or replace function fstore.training_dataset_slices(
  p_name text, p_slice_by text, p_version integer default null, p_label text default null,
  p_split text default null, p_min_slice_rows integer default 30, p_max_difference float8 default 0.1,
  p_alpha float8 default 0.05, p_project text default null
) returns table (
  slice text, slice_kind text, rows bigint, labelled bigint, positives bigint, label_rate float8,
  rest_labelled bigint, rest_rate float8, difference float8, z float8, p_value float8, folded_values bigint,
  flagged boolean
) language plpgsql stable
set search_path = pg_catalog, fstore, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  v_td fstore.training_datasets := fstore.find_training_dataset(p_name, p_version, p_project);
  v_label_name text := v_td.project || '.' || v_td.name || ' version ' || v_td.version;
  v_table regclass := format('%I.%I', v_td.project, v_td.table_name)::regclass;
  v_label text;
  v_type regtype;
  v_value text;
  v_y text;
  v_where text := 'true';
  v_slices integer;
begin
  perform fstore.check_slice_options(p_min_slice_rows, 10);
  if p_max_difference is null or p_max_difference < 0 or p_max_difference > 1 then
    raise exception 'max_difference must be a rate difference in [0, 1], not %', coalesce(p_max_difference::text, 'NULL')
      using errcode = '22023';
  end if;
  if p_alpha is not null and (p_alpha <= 0 or p_alpha > 1) then
    raise exception 'alpha must be in (0, 1] (or NULL: no test), not %', p_alpha using errcode = '22023';
  end if;
  -- the label: the dataset's only one, or the one named
  if cardinality(v_td.label) = 0 then
    raise exception 'training dataset % has no label: a label rate per slice needs one (build it with a label)',
      v_label_name using errcode = '22023';
  elsif p_label is null and cardinality(v_td.label) > 1 then
    raise exception 'training dataset % has labels %: choose one', v_label_name, array_to_string(v_td.label, ', ')
      using errcode = '22023';
  elsif p_label is not null and not p_label = any(v_td.label) then
    raise exception 'training dataset % has no label %; its labels: %', v_label_name, quote_literal(left(p_label, 80)),
      array_to_string(v_td.label, ', ') using errcode = '42703';
  end if;
  v_label := coalesce(p_label, v_td.label[1]);
  if p_slice_by is null or p_slice_by in ('_row', v_label) or not exists (
       select 1 from pg_attribute a where a.attrelid = v_table and a.attname = p_slice_by and a.attnum > 0
          and not a.attisdropped) then
    raise exception 'training dataset % has no column % to slice by; slice by one of: %', v_label_name,
      coalesce(quote_literal(left(p_slice_by, 80)), 'NULL'),
      (select string_agg(a.attname::text, ', ' order by a.attnum) from pg_attribute a
        where a.attrelid = v_table and a.attnum > 0 and not a.attisdropped and a.attname not in ('_row', v_label))
      using errcode = '42703';
  end if;
  select string_agg(c, ', ') into v_value from unnest(array[p_slice_by, v_label]) c
   where not has_column_privilege(v_table, c, 'SELECT');
  if v_value is not null then
    raise exception 'permission denied for column % of training dataset % (to %)', v_value, v_label_name, session_user
      using errcode = '42501';
  end if;
  if p_split is not null then
    if v_td.split is null then
      raise exception 'training dataset % was not split: drop the split (%)', v_label_name, quote_literal(p_split)
        using errcode = '22023';
    elsif not v_td.split ? p_split then
      raise exception 'training dataset % has no split %; its splits: %', v_label_name, quote_literal(p_split),
        (select string_agg(k, ', ' order by k) from jsonb_object_keys(v_td.split) k) using errcode = '22023';
    end if;
    v_where := 'split = $2';
  end if;

  -- a binary label: boolean, or a number that is 0 or 1
  select a.atttypid into v_type from pg_attribute a where a.attrelid = v_table and a.attname = v_label;
  if v_type = 'boolean'::regtype then
    v_y := format('%I::integer', v_label);
  elsif fstore.statistics_kind(v_type) = 'numeric' then
    execute format('select %1$I::text from %2$s where %1$I::float8 not in (0, 1) and %3$s limit 1',
                   v_label, v_table, v_where) into v_value using null::text, p_split;
    if v_value is not null then
      raise exception 'label % of training dataset % is not binary (it holds %): a label rate needs 0/1 or true/false',
        v_label, v_label_name, v_value using errcode = '22023';
    end if;
    v_y := format('%I::float8::integer', v_label);
  else
    raise exception 'label % of training dataset % is of type %: a label rate needs a boolean or 0/1 label',
      v_label, v_label_name, v_type using errcode = '22023';
  end if;

  execute format('select count(*) from (select 1 from %2$s where %3$s group by %1$I having count(*) >= $1) s',
                 p_slice_by, v_table, v_where) into v_slices using p_min_slice_rows, p_split;
  if v_slices > fstore.max_slices() then
    raise exception 'slice_by % of training dataset % makes % slices of at least % rows (at most % are allowed): slice by a column with fewer values, or raise min_slice_rows',
      p_slice_by, v_label_name, v_slices, p_min_slice_rows, fstore.max_slices() using errcode = '22023';
  end if;

  return query execute format('
    with sizes as (select %1$I::text as key, %1$I is null as is_null, count(*) as k, count(y) as l, sum(y) as p
                     from (select %1$I, %2$s as y from %3$s where %4$s) d group by 1, 2),
         grouped as (select case when k < $1 then ''other'' when is_null then ''null'' else ''value'' end as kind,
                            case when k < $1 then ''(other)'' else key end as label,
                            sum(k)::bigint as n, sum(l)::bigint as l, coalesce(sum(p), 0)::bigint as p,
                            count(*) filter (where k < $1) as folded
                       from sizes group by 1, 2),
         total as (select sum(n)::bigint as n, sum(l)::bigint as l, sum(p)::bigint as p from grouped),
         rated as (select g.*, t.l - g.l as rl, t.p - g.p as rp, t.p::float8 / nullif(t.l, 0) as pooled
                     from grouped g, total t),
         tested as (select r.*, r.p::float8 / nullif(r.l, 0) as rate, r.rp::float8 / nullif(r.rl, 0) as rest,
                           (r.p::float8 / nullif(r.l, 0) - r.rp::float8 / nullif(r.rl, 0))
                           / nullif(sqrt(r.pooled * (1 - r.pooled) * (1.0 / nullif(r.l, 0) + 1.0 / nullif(r.rl, 0))), 0)
                           as z
                      from rated r)
    select ''(all)'', ''all'', t.n, t.l, t.p, t.p::float8 / nullif(t.l, 0), null::bigint, null::float8, null::float8,
           null::float8, null::float8, null::bigint, false
      from total t
    union all
    (select label, kind, n, l, p, rate, rl, rest, rate - rest, z, fstore.normal_two_sided_p(z), folded,
            coalesce(abs(rate - rest) >= $3 and ($4::float8 is null or fstore.normal_two_sided_p(z) < $4), false)
       from tested
      order by kind = ''other'', kind = ''null'', n desc, label)',
    p_slice_by, v_y, v_table, v_where)
    using p_min_slice_rows, p_split, p_max_difference, p_alpha;
end $$;
comment on function fstore.training_dataset_slices(text,text,integer,text,text,integer,double precision,double precision,text) is
  'The label rate of a stored training dataset per value of one of its columns (p_slice_by, not the label), with the caller''s rights: the table''s row policies (those of the groups it read) decide the rows. p_label: which label (default the dataset''s only one); it must be boolean or numeric 0/1. p_split: one split only (default all rows). One row per slice, the whole first (slice_kind all), then values by size, NULLs (null), and values with fewer than p_min_slice_rows rows (default 30) folded into one ''(other)'' slice (folded_values: how many). rows; labelled (non-NULL labels); positives; label_rate = positives / labelled; rest_labelled and rest_rate: the same over every other row; difference = label_rate - rest_rate; z: the two-proportion z statistic with the pooled rate, and p_value its two-sided p-value (normal approximation; NULL when a side has no labels or every label is equal). flagged: |difference| >= p_max_difference (default 0.1) and, unless p_alpha is NULL, p_value < p_alpha (default 0.05): a difference both large and unlikely to be chance.';

grant execute on function
  fstore.max_slices(),
  fstore.check_slice_options(integer,integer),
  fstore.check_slice_by(bigint,text,text[],text),
  fstore.normal_two_sided_p(double precision),
  fstore.slice_statistics(bigint,text,text[],bigint,integer,double precision,integer),
  fstore.training_dataset_slices(text,text,integer,text,text,integer,double precision,double precision,text)
  to public;
reset role;
