-- Exact drift measures of numeric columns without sorting them: fstore.drift_row_measures
-- hands its finite numeric columns here. One scan puts every column's values of both windows
-- into fine equal-width bins (count, sum, least and greatest value per bin and window); the
-- CDFs of both windows are then known exactly at every bin's end, which gives the KS
-- statistic's lower bound (the gap at each bin's last value), the Wasserstein area wherever
-- the CDF gap keeps one sign inside a bin (from the bin's counts and sums), and the bin of
-- each baseline rank the quantile edges interpolate. Only the bins where the KS maximum may
-- lie, where the CDFs may cross, or that hold a quantile rank or edge inside them are read
-- again, in one more scan for every column, value by value. The results are those of the
-- sort (fstore.numeric_drift_sql), up to floating-point rounding.

set role fstore_control;

create or replace function fstore.drift_fine_bins(p_columns integer[], p_nb bigint[], p_nc bigint[],
  p_lo float8[], p_hi float8[], p_bins integer, p_floor float8)
returns table (i integer, psi float8, js_distance float8, ks float8, wasserstein float8)
language plpgsql volatile
set search_path = pg_catalog, fstore, pg_temp
set work_mem = '256MB'
set jit = off
as $$
#variable_conflict use_column
declare
  c_per_bin constant integer := 64;       -- values per fine bin, about
  c_max_bins constant integer := 65536;
  v_m integer[] := '{}';                  -- fine bins per column
  v_hi float8[] := '{}';
  v_flags boolean[];
  v_fractions float8[];
  v_k integer;
  v_j integer;
  v_c integer;
  v_nb bigint;
  v_nc bigint;
  v_lb float8;
  v_ranks bigint[];
  v_rank_bins integer[];
  v_rank_values float8[];
  v_edges float8[];
  v_edge_bins integer[];
  v_below_b bigint[];
  v_below_c bigint[];
  v_b float8;
  v_cv float8;
  v_psi float8;
  v_js float8;
  v_pb float8;
  v_pc float8;
begin
  select array_agg(f::float8 / p_bins order by f) into v_fractions from generate_series(1, p_bins - 1) f;
  for v_j in 1 .. cardinality(p_columns) loop
    v_m := v_m || least(c_max_bins, greatest(1, (p_nb[v_j] + p_nc[v_j]) / c_per_bin))::integer;
    v_hi := v_hi || case when p_hi[v_j] > p_lo[v_j] then p_hi[v_j] else p_lo[v_j] + 1 end;
  end loop;
  -- per column, one scan: its values in equal-width bins over [least, greatest] (the greatest
  -- value in a bin of its own); width_bucket is monotone, so the bins keep the values' order.
  -- Grouped by bin and window first (plain aggregates, no filter per row), then by bin
  drop table if exists pg_temp._fstore_drift_bins;
  create temp table _fstore_drift_bins (f integer, bin integer, kb bigint, kc bigint, sb float8, sc float8,
    mn float8, mx float8, cb bigint, cc bigint, next_mn float8) on commit drop;
  for v_j in 1 .. cardinality(p_columns) loop
    execute format('insert into pg_temp._fstore_drift_bins
      select %1$s, bin, kb, kc, sb, sc, mn, mx, (sum(kb) over w - kb)::bigint, (sum(kc) over w - kc)::bigint,
             lead(mn) over w
        from (select bin, coalesce(sum(k) filter (where in_base), 0)::bigint as kb,
                     coalesce(sum(k) filter (where in_cur), 0)::bigint as kc,
                     coalesce(sum(s) filter (where in_base), 0) as sb, coalesce(sum(s) filter (where in_cur), 0) as sc,
                     min(mn) as mn, max(mx) as mx
                from (select width_bucket(%2$s, %3$L::float8, %4$L::float8, %5$s) as bin, in_base, in_cur,
                             count(*) as k, sum(%2$s) as s, min(%2$s) as mn, max(%2$s) as mx
                        from pg_temp._fstore_drift_rows where %2$s is not null group by 1, 2, 3) g
               group by 1) b
      window w as (order by bin rows unbounded preceding)', v_j, 'c' || p_columns[v_j], p_lo[v_j], v_hi[v_j], v_m[v_j]);
  end loop;
  create index on pg_temp._fstore_drift_bins (f, bin);
  analyze pg_temp._fstore_drift_bins;

  -- the bins read again: where the KS maximum may lie or the CDFs may cross (the gap inside a
  -- bin lies between g0 - kc/nc and g0 + kb/nb, g0 the gap before it), and those holding a
  -- baseline quantile rank or edge strictly inside them
  drop table if exists pg_temp._fstore_drift_refine;
  create temp table _fstore_drift_refine (f integer, bin integer, primary key (f, bin)) on commit drop;
  drop table if exists pg_temp._fstore_drift_ranks;
  create temp table _fstore_drift_ranks (f integer, r bigint, bin integer, value float8) on commit drop;
  for v_j in 1 .. cardinality(p_columns) loop
    v_nb := p_nb[v_j];
    v_nc := p_nc[v_j];
    select max(abs((cb + kb)::float8 / v_nb - (cc + kc)::float8 / v_nc)) into v_lb
      from pg_temp._fstore_drift_bins where f = v_j;
    insert into pg_temp._fstore_drift_refine
    select f, bin from (select f, bin, mn, mx, cb::float8 / v_nb - cc::float8 / v_nc as g0, kb::float8 / v_nb as db,
                               kc::float8 / v_nc as dc
                          from pg_temp._fstore_drift_bins where f = v_j) b
     where mn < mx and (greatest(abs(g0 - dc), abs(g0 + db)) > v_lb or (g0 - dc < 0 and g0 + db > 0));
    -- the baseline ranks (0-based) percentile_cont interpolates between, and their bins
    insert into pg_temp._fstore_drift_ranks
    select v_j, r.r, b.bin, case when b.mn = b.mx then b.mn end
      from (select distinct x.r from unnest(v_fractions) q,
                   lateral (values (floor(q * (v_nb - 1))::bigint), (ceil(q * (v_nb - 1))::bigint)) x(r)) r
      join pg_temp._fstore_drift_bins b on b.f = v_j and b.cb <= r.r and r.r < b.cb + b.kb;
    insert into pg_temp._fstore_drift_refine
    select distinct v_j, bin from pg_temp._fstore_drift_ranks where f = v_j and value is null
    on conflict do nothing;
    -- an edge between two known ranks' values, inside a bin of current values only
    insert into pg_temp._fstore_drift_refine
    select distinct v_j, b.bin
      from (select case when ceil(p) = floor(p) then lo.value else lo.value + (hi.value - lo.value) * (p - floor(p)) end as e
              from (select q * (v_nb - 1) as p from unnest(v_fractions) q) q
              join pg_temp._fstore_drift_ranks lo on lo.f = v_j and lo.r = floor(q.p)::bigint
              join pg_temp._fstore_drift_ranks hi on hi.f = v_j and hi.r = ceil(q.p)::bigint
             where lo.value is not null and hi.value is not null) e
      join pg_temp._fstore_drift_bins b on b.f = v_j and b.bin = width_bucket(e.e, p_lo[v_j], v_hi[v_j], v_m[v_j])
     where b.mn < e.e and e.e <= b.mx
    on conflict do nothing;
  end loop;
  analyze pg_temp._fstore_drift_refine;

  -- those bins' values, value by value: one more scan per column that has such bins (a bin is
  -- looked up in a constant array of flags, one per bin)
  drop table if exists pg_temp._fstore_drift_points;
  create temp table _fstore_drift_points (f integer, bin integer, v float8, kb bigint, kc bigint) on commit drop;
  for v_j in 1 .. cardinality(p_columns) loop
    v_flags := array(select exists (select 1 from pg_temp._fstore_drift_refine r where r.f = v_j and r.bin = b)
                       from generate_series(0, v_m[v_j] + 1) b);
    if true = any(v_flags) then
      execute format('insert into pg_temp._fstore_drift_points
        select %1$s, bin, v, count(*) filter (where in_base), count(*) filter (where in_cur)
          from (select width_bucket(%2$s, %3$L::float8, %4$L::float8, %5$s) as bin, %2$s as v, in_base, in_cur
                  from pg_temp._fstore_drift_rows
                 where %2$s is not null and (%6$L::boolean[])[width_bucket(%2$s, %3$L::float8, %4$L::float8, %5$s) + 1]) s
         group by 2, 3', v_j, 'c' || p_columns[v_j], p_lo[v_j], v_hi[v_j], v_m[v_j], v_flags);
    end if;
  end loop;
  create index on pg_temp._fstore_drift_points (f, bin, v);
  analyze pg_temp._fstore_drift_points;

  for v_j in 1 .. cardinality(p_columns) loop
    i := p_columns[v_j];
    v_nb := p_nb[v_j];
    v_nc := p_nc[v_j];
    -- the gap after each value of a bin read again, and after each bin's last value
    with pts as (select p.bin, p.v, lead(p.v) over w as next_v,
                        (b.cb + sum(p.kb) over w)::float8 / v_nb - (b.cc + sum(p.kc) over w)::float8 / v_nc as gap
                   from pg_temp._fstore_drift_points p
                   join pg_temp._fstore_drift_bins b on b.f = p.f and b.bin = p.bin
                  where p.f = v_j
                 window w as (partition by p.bin order by p.v rows unbounded preceding)),
         inside as (select bin, max(abs(gap)) as ks, sum(abs(gap) * coalesce(next_v - v, 0)) as w1
                      from pts group by bin),
         bins as (select b.*, (b.cb + b.kb)::float8 / v_nb - (b.cc + b.kc)::float8 / v_nc as g1,
                         b.cb::float8 / v_nb - b.cc::float8 / v_nc as g0
                    from pg_temp._fstore_drift_bins b where b.f = v_j)
    select max(greatest(abs(b.g1), coalesce(n.ks, 0))),
           sum(case when n.bin is not null then n.w1
                    when b.mn = b.mx then 0
                    else abs(b.g0 * (b.mx - b.mn) + (b.kb * b.mx - b.sb) / v_nb - (b.kc * b.mx - b.sc) / v_nc) end
               + abs(b.g1) * coalesce(b.next_mn - b.mx, 0))
      into ks, wasserstein
      from bins b left join inside n on n.bin = b.bin;

    -- the baseline's values at the ranks (read again where a bin holds more than one value),
    -- the quantile edges as percentile_cont interpolates them, equal ones merged
    with pts as (select p.bin, p.v, b.cb + sum(p.kb) over w - p.kb as before, b.cb + sum(p.kb) over w as upto
                   from pg_temp._fstore_drift_points p
                   join pg_temp._fstore_drift_bins b on b.f = p.f and b.bin = p.bin
                  where p.f = v_j and p.bin in (select bin from pg_temp._fstore_drift_ranks where f = v_j and value is null)
                 window w as (partition by p.bin order by p.v rows unbounded preceding))
    select array_agg(r.r order by r.r), array_agg(coalesce(r.value, p.v) order by r.r)
      into v_ranks, v_rank_values
      from pg_temp._fstore_drift_ranks r
      left join pts p on r.value is null and p.bin = r.bin and p.before <= r.r and r.r < p.upto
     where r.f = v_j;
    v_edges := array(select distinct e from (
                 select case when ceil(p) = floor(p) then lo else lo + (hi - lo) * (p - floor(p)) end as e
                   from (select p, v_rank_values[array_position(v_ranks, floor(p)::bigint)] as lo,
                                v_rank_values[array_position(v_ranks, ceil(p)::bigint)] as hi
                           from (select q * (v_nb - 1) as p from unnest(v_fractions) q) q) r) s
                where e is not null order by e);
    -- values of each window below each edge: the bins below its bin, and its bin's values below it
    select array_agg(below_b order by e), array_agg(below_c order by e) into v_below_b, v_below_c
      from (select u.e,
                   (select coalesce(sum(b.kb), 0) from pg_temp._fstore_drift_bins b where b.f = v_j and b.bin < u.k)
                   + coalesce((select case when b.mx < u.e then b.kb when b.mn >= u.e then 0
                                           else (select coalesce(sum(p.kb), 0) from pg_temp._fstore_drift_points p
                                                  where p.f = v_j and p.bin = u.k and p.v < u.e) end
                                 from pg_temp._fstore_drift_bins b where b.f = v_j and b.bin = u.k), 0) as below_b,
                   (select coalesce(sum(b.kc), 0) from pg_temp._fstore_drift_bins b where b.f = v_j and b.bin < u.k)
                   + coalesce((select case when b.mx < u.e then b.kc when b.mn >= u.e then 0
                                           else (select coalesce(sum(p.kc), 0) from pg_temp._fstore_drift_points p
                                                  where p.f = v_j and p.bin = u.k and p.v < u.e) end
                                 from pg_temp._fstore_drift_bins b where b.f = v_j and b.bin = u.k), 0) as below_c
              from (select e, width_bucket(e, p_lo[v_j], v_hi[v_j], v_m[v_j]) as k from unnest(v_edges) e) u) c;
    v_below_b := array[0::bigint] || coalesce(v_below_b, '{}') || v_nb;
    v_below_c := array[0::bigint] || coalesce(v_below_c, '{}') || v_nc;
    v_psi := 0;
    v_js := 0;
    for v_c in 1 .. cardinality(v_below_b) - 1 loop
      v_b := (v_below_b[v_c + 1] - v_below_b[v_c])::float8 / v_nb;
      v_cv := (v_below_c[v_c + 1] - v_below_c[v_c])::float8 / v_nc;
      v_pb := greatest(v_b, p_floor);
      v_pc := greatest(v_cv, p_floor);
      v_psi := v_psi + (v_pc - v_pb) * ln(v_pc / v_pb);
      v_js := v_js + case when v_b > 0 then 0.5 * v_b * ln(2 * v_b / (v_b + v_cv)) else 0 end
                   + case when v_cv > 0 then 0.5 * v_cv * ln(2 * v_cv / (v_b + v_cv)) else 0 end;
    end loop;
    psi := v_psi;
    js_distance := sqrt(greatest(v_js, 0) / ln(2));
    return next;
  end loop;
  drop table pg_temp._fstore_drift_bins;
  drop table pg_temp._fstore_drift_refine;
  drop table pg_temp._fstore_drift_ranks;
  drop table pg_temp._fstore_drift_points;
end $$;
comment on function fstore.drift_fine_bins(integer[],bigint[],bigint[],double precision[],double precision[],integer,double precision) is
  'Exact psi, js_distance, ks and wasserstein of numeric columns c<p_columns[j]> of pg_temp._fstore_drift_rows (the caller''s own temporary table, see fstore.drift_row_measures) without sorting them: p_nb, p_nc their non-NULL values per window, p_lo, p_hi their least and greatest (finite) values. One scan bins every column''s values into equal-width fine bins (about 64 values each, at most 65536 bins); the CDFs at the bins'' ends give the KS lower bound, the Wasserstein area where the CDF gap keeps one sign in a bin, and the bins of the baseline''s quantile ranks; one more scan reads, value by value, only the bins where the KS maximum may lie, the CDFs may cross, or a quantile rank or edge falls inside. Same definitions as fstore.feature_drift (PSI and JS over p_bins bins at the baseline''s quantiles as percentile_cont, shares floored at p_floor in the PSI).';

grant execute on function
  fstore.drift_fine_bins(integer[],bigint[],bigint[],double precision[],double precision[],integer,double precision)
  to public;
reset role;
