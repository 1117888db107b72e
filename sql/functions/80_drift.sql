-- Drift: how the distribution of each feature of a feature group differs between two
-- windows of its offline rows, a baseline and a current one. Runs with the caller's
-- rights (SECURITY INVOKER): row-level security and row policies decide which rows
-- each window holds, so a Data Scientist measures drift over what they may read.

set role fstore_control;

create or replace function fstore.check_drift_window(p_window jsonb, p_label text) returns jsonb
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
  c_keys constant text[] := '{commit,commits,up_to_commit,after_commit,from,to}';
  v_key text;
begin
  if jsonb_typeof(p_window) is distinct from 'object' or p_window = '{}' then
    raise exception '% window must be an object with any of: commit, commits, up_to_commit, after_commit, from, to',
      p_label using errcode = '22023';
  end if;
  for v_key in select jsonb_object_keys(p_window) loop
    if not v_key = any(c_keys) then
      raise exception '% window: unknown key %; use commit, commits, up_to_commit, after_commit, from or to',
        p_label, quote_literal(v_key) using errcode = '22023';
    end if;
  end loop;
  begin
    perform (p_window->>'commit')::bigint, (p_window->>'up_to_commit')::bigint, (p_window->>'after_commit')::bigint,
            (p_window->>'from')::timestamptz, (p_window->>'to')::timestamptz;
    if p_window ? 'commits' then
      perform c::bigint from jsonb_array_elements_text(p_window->'commits') c;
    end if;
  exception when others then
    raise exception '% window %: commits must be integers and from/to timestamps (%)', p_label, p_window, sqlerrm
      using errcode = '22023';
  end;
  return p_window;
end $$;
comment on function fstore.check_drift_window(jsonb,text) is
  'A window of offline rows, as JSON: any of {"commit": 12} rows of that commit {"commits": [12, 14]} rows of those commits {"up_to_commit": 12} rows of commits <= 12 (what a training set saw) {"after_commit": 12} rows of commits > 12 {"from": ts, "to": ts} event_time in [from, to) (either bound alone too) combined with AND. Checked here: an error names the window (p_label) and the key.';

create or replace function fstore.drift_window_sql(p_window jsonb, p_first integer, p_event_time text) returns text
language sql immutable set search_path = pg_catalog, pg_temp as $$
  select coalesce(string_agg(c.condition, ' and ' order by c.i), 'true')
    from (values (0, 'commit', format('_commit_id = $%s', p_first)),
                 (1, 'commits', format('_commit_id = any($%s)', p_first + 1)),
                 (2, 'up_to_commit', format('_commit_id <= $%s', p_first + 2)),
                 (3, 'after_commit', format('_commit_id > $%s', p_first + 3)),
                 (4, 'from', format('%I >= $%s', p_event_time, p_first + 4)),
                 (5, 'to', format('%I < $%s', p_event_time, p_first + 5))) c(i, key, condition)
   where p_window ? c.key
$$;
comment on function fstore.drift_window_sql(jsonb,integer,text) is
  'The WHERE condition of a window (see above) over the offline table, as SQL text whose values are the parameters $n .. $n+5 of the query it goes into, in the order of fstore.drift_window_values: commit, commits, up_to_commit, after_commit, from, to. Only the keys the window has become conditions (so the planner sees plain comparisons).';

create or replace function fstore.drift_window_values(p_window jsonb, out commit_id bigint, out commit_ids bigint[],
  out up_to_commit bigint, out after_commit bigint, out from_time timestamptz, out to_time timestamptz)
language sql immutable set search_path = pg_catalog, pg_temp as $$
  select (p_window->>'commit')::bigint, array(select jsonb_array_elements_text(p_window->'commits')::bigint),
         (p_window->>'up_to_commit')::bigint, (p_window->>'after_commit')::bigint,
         (p_window->>'from')::timestamptz, (p_window->>'to')::timestamptz
$$;
comment on function fstore.drift_window_values(jsonb) is
  'The values of a window (checked by fstore.check_drift_window) in the order of the parameters of fstore.drift_window_sql: commit, commits, up_to_commit, after_commit, from, to (NULL where the window has no such key).';

create or replace function fstore.check_group_features(p_feature_group_id bigint, p_features text[]) returns void
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups := fstore.feature_group_by_id(p_feature_group_id);
  v_unknown text;
begin
  select string_agg(f, ', ') into v_unknown from unnest(p_features) f
   where not exists (select 1 from fstore.features x where x.feature_group_id = v_fg.id and x.name = f and not x.is_key);
  if v_unknown is not null then
    raise exception 'feature group %.%@% has no feature %', v_fg.project, v_fg.name, v_fg.version, v_unknown
      using errcode = '42703';
  end if;
end $$;
comment on function fstore.check_group_features(bigint,text[]) is
  'Refuses, naming them, the names of p_features that are not non-key features of the group. Drift, histograms and monitors ask it.';

-- The PSI and Jensen-Shannon distance of the bin shares (b, c) of a query's "shares" CTE,
-- as two select-list expressions; $p_floor is the floor of a share in the PSI.
create or replace function fstore.drift_divergences_sql(p_floor integer) returns text
language sql immutable set search_path = pg_catalog, pg_temp as $$
  select format('(select sum((greatest(c, $%1$s) - greatest(b, $%1$s)) * ln(greatest(c, $%1$s) / greatest(b, $%1$s)))
                  from shares where b is not null and c is not null),
               (select sqrt(greatest(j, 0) / ln(2))
                  from (select 0.5 * sum(case when b > 0 then b * ln(2 * b / (b + c)) else 0 end)
                               + 0.5 * sum(case when c > 0 then c * ln(2 * c / (b + c)) else 0 end) as j
                          from shares where b is not null and c is not null) divergence
                 where j is not null)', p_floor)
$$;
comment on function fstore.drift_divergences_sql(integer) is
  'PSI (each share floored at the parameter $p_floor) and Jensen-Shannon distance (base 2) over a "shares" CTE of bin shares (b, c), as two select-list expressions.';

-- The measures of one numeric column between two windows, as the rest of a query that
-- begins "with base as (... v ...), cur as (... v ...),": null rates, means, PSI and JS
-- over bins at the baseline's quantiles ($p_fractions: the quantile fractions), the
-- exact two-sample KS statistic and the Wasserstein-1 distance.
create or replace function fstore.numeric_drift_sql(p_fractions integer, p_floor integer) returns text
language sql immutable set search_path = pg_catalog, fstore, pg_temp as $$
  select format('
        edges as (select array(select distinct q from unnest(percentile_cont($%1$s) within group (order by v)) q
                                where q is not null order by q) as e
                    from base where v is not null),
        hb as (select case when cardinality(e) > 0 then width_bucket(v, e) else 0 end as bin, count(*) as k
                 from base, edges where v is not null group by 1),
        hc as (select case when cardinality(e) > 0 then width_bucket(v, e) else 0 end as bin, count(*) as k
                 from cur, edges where v is not null group by 1),
        shares as (select coalesce(hb.k, 0)::float8 / nullif(sum(coalesce(hb.k, 0)) over (), 0) as b,
                          coalesce(hc.k, 0)::float8 / nullif(sum(coalesce(hc.k, 0)) over (), 0) as c
                     from hb full join hc using (bin)),
        cdf as (select v, sum(step) over w as gap, lead(v) over w as next_v
                  from (select v, 1.0::float8 / (select count(v) from base) as step from base where v is not null
                        union all
                        select v, -1.0::float8 / (select count(v) from cur) from cur where v is not null) u
                window w as (order by v rows unbounded preceding))
        select (select count(*) filter (where v is null)::float8 / nullif(count(*), 0) from base),
               (select count(*) filter (where v is null)::float8 / nullif(count(*), 0) from cur),
               (select avg(v) from base), (select avg(v) from cur), %2$s, k.ks, k.w1
          from (select 1) one
          left join (select max(abs(gap)) filter (where next_v is distinct from v) as ks,
                            coalesce(sum(abs(gap) * (next_v - v)), 0) as w1 from cdf
                      where (select count(v) from base) > 0 and (select count(v) from cur) > 0
                     having count(*) > 0) k on true',
                p_fractions, fstore.drift_divergences_sql(p_floor))
$$;
comment on function fstore.numeric_drift_sql(integer,integer) is
  'The rest of a drift query for one numeric column after "with base as (...), cur as (...),": null rates, means, PSI and Jensen-Shannon distance over bins at the baseline''s quantiles (the fractions are parameter $p_fractions; the PSI floor $p_floor) the exact two-sample Kolmogorov-Smirnov statistic and the Wasserstein-1 distance (the area between the two empirical CDFs, in the feature''s own units). The bins: how many edges are <= a value (0 without edges); KS and Wasserstein: one running sum (ROWS frame, cheaper than RANGE) over both windows in one sort, read once for both; the KS reads the sum at the last row of each run of equal values (ties together), and rows inside such a run add nothing to the Wasserstein area (next_v - v = 0).';

-- Thresholds: per feature (or '*', every feature) and per measure, e.g.
-- {"tx_amount_7d": {"psi": 0.1, "wasserstein": 50}, "*": {"ks": 0.3}}.
create or replace function fstore.drift_measures() returns text[]
language sql immutable set search_path = pg_catalog, pg_temp as $$
  select '{psi,js_distance,ks,wasserstein,new_values,null_rate_change}'::text[]
$$;
comment on function fstore.drift_measures() is
  'The measures a drift threshold may name: psi, js_distance, ks, wasserstein (in the feature''s units), new_values (a count), null_rate_change (|current - baseline| null rate).';

create or replace function fstore.check_drift_thresholds(p_feature_group_id bigint, p_thresholds jsonb)
returns jsonb language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_feature text;
  v_limits jsonb;
  v_measure text;
  v_value jsonb;
begin
  if p_thresholds is null or p_thresholds = 'null' then
    return '{}';
  end if;
  if jsonb_typeof(p_thresholds) <> 'object' then
    raise exception 'drift thresholds must be an object of feature -> {measure: value}, e.g. {"amount": {"psi": 0.1}}'
      using errcode = '22023';
  end if;
  for v_feature, v_limits in select * from jsonb_each(p_thresholds) loop
    if v_feature <> '*' and not exists (select 1 from fstore.features f where f.feature_group_id = p_feature_group_id
                                          and f.name = v_feature and not f.is_key) then
      raise exception 'drift thresholds name feature %, which feature group % does not have',
        quote_ident(v_feature), (select g.project || '.' || g.name || '@' || g.version from fstore.feature_groups g
                                  where g.id = p_feature_group_id) using errcode = '42703';
    end if;
    if jsonb_typeof(v_limits) <> 'object' then
      raise exception 'drift thresholds of %: give an object of measure -> value, e.g. {"psi": 0.1}', v_feature
        using errcode = '22023';
    end if;
    for v_measure, v_value in select * from jsonb_each(v_limits) loop
      if not v_measure = any(fstore.drift_measures()) then
        raise exception 'drift thresholds of %: unknown measure %; use %', v_feature, quote_literal(v_measure),
          array_to_string(fstore.drift_measures(), ', ') using errcode = '22023';
      end if;
      if jsonb_typeof(v_value) <> 'number' or (v_value::text)::numeric < 0 then
        raise exception 'drift threshold %.% must be a number >= 0, not %', v_feature, v_measure, left(v_value::text, 40)
          using errcode = '22023';
      end if;
    end loop;
  end loop;
  return p_thresholds;
end $$;
comment on function fstore.check_drift_thresholds(bigint,jsonb) is
  'Check drift thresholds {feature or "*": {measure: number >= 0}} against a feature group: each feature (not a key) and measure (fstore.drift_measures()) must exist; the error names the one that does not. Returns them ({} for NULL).';

create or replace function fstore.set_drift_thresholds(p_feature_group_id bigint, p_thresholds jsonb)
returns jsonb language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_fg fstore.feature_groups;
  v_thresholds jsonb;
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  perform fstore.require_data_owner(v_fg.project, 'set drift thresholds');
  v_thresholds := fstore.check_drift_thresholds(p_feature_group_id, p_thresholds);
  update fstore.feature_groups set options = options || jsonb_build_object('drift_thresholds', v_thresholds)
   where id = p_feature_group_id;
  perform fstore.audit(v_fg.project, 'set_drift_thresholds',
    jsonb_build_object('name', v_fg.name, 'version', v_fg.version, 'thresholds', v_thresholds));
  return v_thresholds;
end $$;
comment on function fstore.set_drift_thresholds(bigint,jsonb) is
  'Store a feature group version''s default drift thresholds {feature or "*": {measure: value}} (Data Owners; {} or NULL clears them; checked for shape only, plain JSON numbers). fstore.feature_drift applies them under the thresholds of the call.';

create or replace function fstore.effective_drift_thresholds(p_stored jsonb, p_call jsonb, p_psi float8, p_feature text)
returns jsonb language sql immutable set search_path = pg_catalog, pg_temp as $$
  select jsonb_build_object('psi', p_psi) || coalesce(p_stored->'*', '{}') || coalesce(p_stored->p_feature, '{}')
         || coalesce(p_call->'*', '{}') || coalesce(p_call->p_feature, '{}')
$$;
comment on function fstore.effective_drift_thresholds(jsonb,jsonb,double precision,text) is
  'The thresholds that apply to one feature, measure by measure, the later winning: psi = p_threshold, the group''s stored "*", its stored feature entry, the call''s "*", the call''s feature entry.';

drop function if exists fstore.feature_drift(bigint,jsonb,jsonb,text[],integer,double precision);
drop function if exists fstore.feature_drift(bigint,jsonb,jsonb,text[],integer,double precision,jsonb);
create or replace function fstore.feature_drift(
  p_feature_group_id bigint, p_baseline jsonb, p_current jsonb, p_features text[] default null,
  p_bins integer default 10, p_threshold float8 default 0.2, p_thresholds jsonb default null,
  p_sample_rows bigint default null
) returns table (
  feature text, kind text, baseline_rows bigint, current_rows bigint,
  baseline_null_rate float8, current_null_rate float8, baseline_mean float8, current_mean float8,
  psi float8, js_distance float8, ks float8, new_values bigint, drifted boolean,
  wasserstein float8, thresholds jsonb, tripped text[], estimated boolean
) language plpgsql volatile  -- it writes its one pass over the table into a temporary table
set search_path = pg_catalog, public, fstore, pg_temp
set work_mem = '256MB'  -- the quantile and KS sorts of a few million values stay in memory
set jit = off
as $$
declare
  c_floor constant float8 := 0.0001;
  c_top_values constant integer := 50;
  v_fg fstore.feature_groups;
  v_table text;
  v_label text;
  v_name text;
  v_kind text;
  v_call jsonb;
  v_names text[] := '{}';
  v_kinds text[] := '{}';
  v_columns text := '';
  v_row record;
  -- the windows' values, passed as parameters $1-$6 (baseline) and $7-$12 (current)
  b_commit bigint;
  b_commits bigint[];
  b_up_to bigint;
  b_after bigint;
  b_from timestamptz;
  b_to timestamptz;
  c_commit bigint;
  c_commits bigint[];
  c_up_to bigint;
  c_after bigint;
  c_from timestamptz;
  c_to timestamptz;
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  v_label := v_fg.project || '.' || v_fg.name || '@' || v_fg.version;
  perform fstore.check_drift_window(p_baseline, 'baseline'), fstore.check_drift_window(p_current, 'current');
  select w.* into b_commit, b_commits, b_up_to, b_after, b_from, b_to from fstore.drift_window_values(p_baseline) w;
  select w.* into c_commit, c_commits, c_up_to, c_after, c_from, c_to from fstore.drift_window_values(p_current) w;
  if p_bins is null or p_bins < 2 or p_bins > 1000 then
    raise exception 'bins must be between 2 and 1000, not %', coalesce(p_bins::text, 'NULL') using errcode = '22023';
  end if;
  perform fstore.check_group_features(v_fg.id, p_features);
  v_call := fstore.check_drift_thresholds(v_fg.id, p_thresholds);
  v_table := format('%I.%I', v_fg.project, v_fg.offline_table);
  -- the features measured, and what is measured of each (vectors by their L2 norm)
  for v_name, v_kind in
    select f.name, fstore.statistics_kind(a.atttypid)
      from fstore.features f
      join pg_attribute a on a.attrelid = v_table::regclass and a.attname = f.name and not a.attisdropped
     where f.feature_group_id = v_fg.id and not f.is_key
       and (p_features is null or f.name = any(p_features))
     order by coalesce(array_position(p_features, f.name), f.position)
  loop
    v_names := v_names || v_name;
    v_kinds := v_kinds || v_kind;
    v_columns := v_columns || format(', %s as c%s', case v_kind when 'numeric' then format('%I::float8', v_name)
                                                               when 'vector' then format('vector_norm(%I)', v_name)
                                                               when 'temporal' then format('%I', v_name)
                                                               else format('%I::text', v_name) end,
                                     cardinality(v_names));
  end loop;
  if p_sample_rows is not null and p_sample_rows < 1000 then
    raise exception 'sample_rows must be at least 1000, not %', p_sample_rows using errcode = '22023';
  end if;
  -- one pass over the offline table: both windows' rows (a sample of each with p_sample_rows),
  -- the measured features only, into a temporary table that every feature's measures read
  estimated := false;
  if p_sample_rows is not null then  -- the sampling rates need the windows' sizes first
    execute format('select count(*) filter (where %2$s), count(*) filter (where %3$s) from %1$s where (%2$s) or (%3$s)',
                   v_table, fstore.drift_window_sql(p_baseline, 1, v_fg.event_time),
                   fstore.drift_window_sql(p_current, 7, v_fg.event_time))
      into baseline_rows, current_rows
      using b_commit, b_commits, b_up_to, b_after, b_from, b_to, c_commit, c_commits, c_up_to, c_after, c_from, c_to;
    estimated := greatest(baseline_rows, current_rows) > p_sample_rows;
  end if;
  if to_regclass('pg_temp._fstore_drift_rows') is not null then
    drop table pg_temp._fstore_drift_rows;
  end if;
  execute format('create temp table _fstore_drift_rows on commit drop as
                    select * from (select (%2$s) and ($13 is null or random() < $13) as in_base,
                                          (%3$s) and ($14 is null or random() < $14) as in_cur %4$s
                                     from %1$s where (%2$s) or (%3$s)) w
                     where in_base or in_cur',
                 v_table, fstore.drift_window_sql(p_baseline, 1, v_fg.event_time),
                 fstore.drift_window_sql(p_current, 7, v_fg.event_time), v_columns)
    using b_commit, b_commits, b_up_to, b_after, b_from, b_to, c_commit, c_commits, c_up_to, c_after, c_from, c_to,
          case when estimated and baseline_rows > p_sample_rows then p_sample_rows::float8 / baseline_rows end,
          case when estimated and current_rows > p_sample_rows then p_sample_rows::float8 / current_rows end;
  if p_sample_rows is null then
    select count(*) filter (where in_base), count(*) filter (where in_cur)
      into baseline_rows, current_rows from pg_temp._fstore_drift_rows;
  end if;
  if baseline_rows = 0 or current_rows = 0 then
    raise exception 'the % window % holds no rows of feature group % (visible to %)',
      case when baseline_rows = 0 then 'baseline' else 'current' end,
      case when baseline_rows = 0 then p_baseline else p_current end, v_label, session_user
      using errcode = '22023';
  end if;
  for v_row in select * from fstore.drift_row_measures(v_kinds, p_bins, c_floor, c_top_values) loop
    feature := v_names[v_row.i];
    kind := v_kinds[v_row.i];
    baseline_null_rate := v_row.baseline_null_rate; current_null_rate := v_row.current_null_rate;
    baseline_mean := v_row.baseline_mean; current_mean := v_row.current_mean;
    psi := v_row.psi; js_distance := v_row.js_distance; ks := v_row.ks; wasserstein := v_row.wasserstein;
    new_values := v_row.new_values;
    thresholds := fstore.effective_drift_thresholds(v_fg.options->'drift_thresholds', v_call, p_threshold, feature);
    select t.tripped, t.drifted into tripped, drifted
      from fstore.drift_tripped(thresholds, jsonb_build_object('psi', psi, 'js_distance', js_distance, 'ks', ks,
             'wasserstein', wasserstein, 'new_values', new_values,
             'null_rate_change', abs(current_null_rate - baseline_null_rate))) t;
    return next;
  end loop;
  drop table pg_temp._fstore_drift_rows;
end $$;
comment on function fstore.feature_drift(bigint,jsonb,jsonb,text[],integer,double precision,jsonb,bigint) is
  'Drift of each feature between a baseline and a current window of a feature group''s offline rows. One row per feature (p_features: these only, in this order; default all): rows in each window, null rate and mean in each (numeric), and psi population stability index over bins, sum (c - b) * ln(c / b) with each share floored at 0.0001. Numeric: p_bins bins at the baseline''s quantiles (percentile_cont; equal edges merged). Categorical (text, boolean, ...): one bin per value, the 50 most frequent over both windows, the rest in one bin. js_distance Jensen-Shannon distance (base 2, in [0, 1]) over the same bins ks two-sample Kolmogorov-Smirnov statistic, exact (numeric only) new_values distinct current values the baseline never had (categorical only) wasserstein Wasserstein-1 distance (numeric only; the area between the two empirical CDFs, in the feature''s own units, so on the baseline''s scale) thresholds the thresholds applied to the feature (fstore.effective_drift_thresholds: psi = p_threshold, 0.2 the usual "significant shift", under the group''s stored defaults and the call''s p_thresholds) tripped the measures that reached their threshold drifted any measure did (NULL when none of the thresholded measures applies to the feature). Vector features are measured by their L2 norm; temporal ones get counts and null rates only (time moves between windows by design). NULLs are not binned; they show in the null rates, and a window without values of a feature gives it no measures (NULL). One pass reads both windows of the offline table (the measured features only) into a temporary table that the measures read (fstore.drift_row_measures: one scan for counts, null rates and means of every feature; numeric features exact without sorting, fstore.drift_fine_bins: one scan each into fine bins, and one more reading value by value only the bins that need it; features with infinite values are sorted), so the function is VOLATILE and needs a read-write transaction. fstore.slice_drift gives the same measures per slice of a column. p_sample_rows: each window larger than that is sampled to about that many rows (uniform, random()); every measure but the row counts then comes from the samples and estimated is true (the KS, Wasserstein, PSI, means and null rates are estimates); baseline_rows and current_rows stay the windows'' real sizes.';

grant execute on function
  fstore.drift_divergences_sql(integer), fstore.numeric_drift_sql(integer,integer),
  fstore.check_drift_window(jsonb,text),
  fstore.drift_window_sql(jsonb,integer,text), fstore.drift_window_values(jsonb),
  fstore.check_group_features(bigint,text[]),
  fstore.feature_drift(bigint,jsonb,jsonb,text[],integer,double precision,jsonb,bigint),
  fstore.drift_measures(), fstore.check_drift_thresholds(bigint,jsonb),
  fstore.set_drift_thresholds(bigint,jsonb),
  fstore.effective_drift_thresholds(jsonb,jsonb,double precision,text)
  to public;
reset role;
