-- The drift measures of the rows a drift check read: every feature of both windows, from
-- the temporary table pg_temp._fstore_drift_rows (in_base, in_cur, c1 .. cn) that
-- fstore.feature_drift and fstore.slice_drift fill with the caller's rights. Nothing here
-- reads a tenant's table: it reads the caller's own temporary table only.
--
-- Exact, with one sort per numeric feature: the running CDF gap over both windows in one
-- ordered pass gives the KS statistic, the Wasserstein-1 area and the baseline's values at
-- the ranks its quantile edges interpolate (as percentile_cont), so the baseline is not
-- sorted again on its own; one scan then counts both windows over those edges (PSI, JS).
-- Row counts, null rates and means of every feature come from one scan for all features.

set role fstore_control;

create or replace function fstore.drift_row_measures(p_kinds text[], p_bins integer, p_floor float8 default 0.0001,
  p_top_values integer default 50)
returns table (
  i integer, baseline_rows bigint, current_rows bigint, baseline_null_rate float8, current_null_rate float8,
  baseline_mean float8, current_mean float8, psi float8, js_distance float8, ks float8, wasserstein float8,
  new_values bigint
) language plpgsql volatile
set search_path = pg_catalog, fstore, pg_temp
set work_mem = '1GB'  -- the sort of a few million values stays in memory (4M values: about 300MB)
set jit = off
as $$
#variable_conflict use_column
declare
  v_n integer := coalesce(cardinality(p_kinds), 0);
  v_nb bigint[];          -- non-NULL values per feature, baseline
  v_nc bigint[];          -- and current
  v_sb float8[];
  v_sc float8[];
  v_fractions float8[];
  v_ranks bigint[];
  v_values float8[];
  v_edges float8[];
  v_nbv bigint;
  v_ncv bigint;
  v_col text;
  v_lo float8[];
  v_hi float8[];
  v_fine integer[] := '{}';    -- the columns measured by fstore.drift_fine_bins
  v_fine_row record;
  v_psi float8[] := '{}';
  v_js float8[] := '{}';
  v_ks float8[] := '{}';
  v_w1 float8[] := '{}';
begin
  select array_agg(f::float8 / p_bins order by f) into v_fractions from generate_series(1, p_bins - 1) f;
  -- one scan: rows of each window, and per feature its values and their sum
  execute format('select count(*) filter (where in_base), count(*) filter (where in_cur),
                         array[%s]::bigint[], array[%s]::bigint[], array[%s]::float8[], array[%s]::float8[],
                         array[%s]::float8[], array[%s]::float8[]
                    from pg_temp._fstore_drift_rows',
    coalesce((select string_agg(format('count(c%s) filter (where in_base)', k), ', ' order by k)
                from generate_series(1, v_n) k), ''),
    coalesce((select string_agg(format('count(c%s) filter (where in_cur)', k), ', ' order by k)
                from generate_series(1, v_n) k), ''),
    coalesce((select string_agg(case when p_kinds[k] in ('numeric', 'vector')
                                     then format('sum(c%s) filter (where in_base)', k) else 'null' end, ', ' order by k)
                from generate_series(1, v_n) k), ''),
    coalesce((select string_agg(case when p_kinds[k] in ('numeric', 'vector')
                                     then format('sum(c%s) filter (where in_cur)', k) else 'null' end, ', ' order by k)
                from generate_series(1, v_n) k), ''),
    coalesce((select string_agg(case when p_kinds[k] in ('numeric', 'vector') then format('min(c%s)', k) else 'null' end,
                                ', ' order by k) from generate_series(1, v_n) k), ''),
    coalesce((select string_agg(case when p_kinds[k] in ('numeric', 'vector') then format('max(c%s)', k) else 'null' end,
                                ', ' order by k) from generate_series(1, v_n) k), ''))
    into baseline_rows, current_rows, v_nb, v_nc, v_sb, v_sc, v_lo, v_hi;
  -- numeric columns with values in both windows, all finite: measured without sorting
  v_fine := array(select k from generate_series(1, v_n) k
                   where p_kinds[k] in ('numeric', 'vector') and v_nb[k] > 0 and v_nc[k] > 0
                     and v_lo[k] > '-Infinity'::float8 and v_hi[k] < 'Infinity'::float8);
  if cardinality(v_fine) > 0 then
    for v_fine_row in select * from fstore.drift_fine_bins(v_fine,
                        array(select v_nb[k] from unnest(v_fine) k), array(select v_nc[k] from unnest(v_fine) k),
                        array(select v_lo[k] from unnest(v_fine) k), array(select v_hi[k] from unnest(v_fine) k),
                        p_bins, p_floor) loop
      v_psi[v_fine_row.i] := v_fine_row.psi;
      v_js[v_fine_row.i] := v_fine_row.js_distance;
      v_ks[v_fine_row.i] := v_fine_row.ks;
      v_w1[v_fine_row.i] := v_fine_row.wasserstein;
    end loop;
  end if;

  for k in 1 .. v_n loop
    i := k;
    v_col := 'c' || k;
    v_nbv := v_nb[k];
    v_ncv := v_nc[k];
    baseline_null_rate := (baseline_rows - v_nbv)::float8 / nullif(baseline_rows, 0);
    current_null_rate := (current_rows - v_ncv)::float8 / nullif(current_rows, 0);
    baseline_mean := null; current_mean := null; psi := null; js_distance := null; ks := null; wasserstein := null;
    new_values := null;
    if p_kinds[k] in ('numeric', 'vector') then
      baseline_mean := v_sb[k] / nullif(v_nbv, 0);
      current_mean := v_sc[k] / nullif(v_ncv, 0);
    end if;

    if k = any(v_fine) then
      psi := v_psi[k]; js_distance := v_js[k]; ks := v_ks[k]; wasserstein := v_w1[k];
    elsif p_kinds[k] in ('numeric', 'vector') and v_nbv > 0 and v_ncv > 0 then  -- NaN or infinite values: sorted
      -- the baseline ranks (0-based) of its quantile edges: percentile_cont interpolates
      -- between floor and ceil of fraction * (n - 1)
      select array_agg(distinct r order by r) into v_ranks
        from unnest(v_fractions) f,
             lateral (values (floor(f * (v_nbv - 1))::bigint), (ceil(f * (v_nbv - 1))::bigint)) x(r);
      -- one ordered pass over both windows: the CDF gap after each value (ties together: read
      -- at the last row of a run of equal values), the area between the CDFs, and the
      -- baseline's values at those ranks (the row where the running baseline count reaches it)
      execute format('
        select max(abs(gap)) filter (where next_v is distinct from v),
               coalesce(sum(abs(gap) * (next_v - v)), 0),
               array_agg(v order by rb) filter (where in_base and rb - 1 = any($3))
          from (select v, in_base, sum(step) over w as gap, lead(v) over w as next_v,
                       sum(in_base::integer) over w as rb
                  from (select %1$s as v, in_base,
                               case when in_base then 1.0::float8 / $1 else 0 end
                               - case when in_cur then 1.0::float8 / $2 else 0 end as step
                          from pg_temp._fstore_drift_rows where %1$s is not null) x
                window w as (order by v rows unbounded preceding)) s', v_col)
        into ks, wasserstein, v_values
        using v_nbv, v_ncv, v_ranks;
      -- the quantile edges, as percentile_cont computes them (lo + (hi - lo) * fraction), equal ones merged
      v_edges := array(select distinct e from (
                   select case when ceil(p) = floor(p) then lo else lo + (hi - lo) * (p - floor(p)) end as e
                     from (select p, v_values[array_position(v_ranks, floor(p)::bigint)] as lo,
                                  v_values[array_position(v_ranks, ceil(p)::bigint)] as hi
                             from (select f * (v_nbv - 1) as p from unnest(v_fractions) f) q) r) s
                  where e is not null order by e);
      -- both windows over those edges (a value's bin: how many edges are <= it)
      execute format('
        with bins as (select width_bucket(%1$s, $1) as bin, count(*) filter (where in_base) as kb,
                             count(*) filter (where in_cur) as kc
                        from pg_temp._fstore_drift_rows where %1$s is not null group by 1),
             shares as (select kb::float8 / $2 as b, kc::float8 / $3 as c from bins)
        select %2$s', v_col, fstore.drift_divergences_sql(4))
        into psi, js_distance
        using v_edges, v_nbv, v_ncv, p_floor;
    elsif p_kinds[k] = 'categorical' and v_nbv > 0 and v_ncv > 0 then
      execute format('
        with bins as (select v, kb, kc, row_number() over (order by kb + kc desc, v) as r
                        from (select %1$s as v, count(*) filter (where in_base) as kb, count(*) filter (where in_cur) as kc
                                from pg_temp._fstore_drift_rows where %1$s is not null group by 1) g),
             lumped as (select case when r <= $1 then v end as bin, sum(kb) as kb, sum(kc) as kc from bins group by 1),
             shares as (select kb::float8 / nullif(sum(kb) over (), 0) as b, kc::float8 / nullif(sum(kc) over (), 0) as c
                          from lumped)
        select %2$s, (select count(*) from bins where kb = 0)', v_col, fstore.drift_divergences_sql(2))
        into psi, js_distance, new_values
        using p_top_values, p_floor;
    end if;
    return next;
  end loop;
end $$;
comment on function fstore.drift_row_measures(text[],integer,double precision,integer) is
  'The drift measures of the rows in pg_temp._fstore_drift_rows (in_base, in_cur, c1 .. cn: the caller''s own temporary table, filled by fstore.feature_drift or fstore.slice_drift), one row per column i of kind p_kinds[i]: rows in each window, null rates, means (numeric and vector), psi and js_distance over p_bins bins at the baseline''s quantiles (as percentile_cont; equal edges merged; shares floored at p_floor in the PSI), the exact two-sample ks and the wasserstein-1 distance, all from one sort of both windows'' values (the baseline''s quantiles read at their ranks in that sort), and for categorical columns one bin per value (the p_top_values most frequent over both windows, the rest in one bin) and new_values. A window without values of a column gives it no measures.';

-- The thresholds a feature's measures reached: the measures at or above theirs, and whether
-- any threshold could be checked at all (NULL: none of them applies to the feature).
create or replace function fstore.drift_tripped(p_thresholds jsonb, p_measures jsonb, out tripped text[],
  out drifted boolean)
language sql immutable set search_path = pg_catalog, fstore, pg_temp as $$
  select coalesce(array_agg(t.key order by array_position(fstore.drift_measures(), t.key))
                    filter (where (p_measures->>t.key)::float8 >= t.value::text::float8), '{}'),
         case when count(*) filter (where p_measures->>t.key is not null) = 0 then null
              else count(*) filter (where (p_measures->>t.key)::float8 >= t.value::text::float8) > 0 end
    from jsonb_each(coalesce(p_thresholds, '{}')) t
$$;
comment on function fstore.drift_tripped(jsonb,jsonb) is
  'Which measures of a feature ({measure: value}) reached their thresholds ({measure: bound}): tripped, in fstore.drift_measures() order; drifted: any did (NULL when no thresholded measure was measured).';

grant execute on function fstore.drift_row_measures(text[],integer,double precision,integer),
  fstore.drift_tripped(jsonb,jsonb) to public;
reset role;
