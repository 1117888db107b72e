-- Histograms of the two windows of a drift check, for a report people look at (fstore's
-- DriftReport.to_html): the shares of each window's values over one set of bins. Runs with
-- the caller's rights (SECURITY INVOKER), over the same windows fstore.feature_drift reads,
-- so row-level security decides what each window holds, as for the measures.

set role fstore_control;

create or replace function fstore.drift_histograms(
  p_feature_group_id bigint, p_baseline jsonb, p_current jsonb, p_features text[] default null,
  p_bins integer default 30, p_top_values integer default 20
) returns table (
  feature text, kind text, edges float8[], labels text[], baseline float8[], current float8[],
  baseline_values bigint, current_values bigint
) language plpgsql stable
set search_path = pg_catalog, public, fstore, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
  v_fg fstore.feature_groups;
  v_label text;
  v_table text;
  v_windows text;
  v_name text;
  v_kind text;
  v_value text;
  v_lo float8;
  v_hi float8;
  v_count integer;
  v_integral boolean;
  b_commit bigint; b_commits bigint[]; b_up_to bigint; b_after bigint; b_from timestamptz; b_to timestamptz;
  c_commit bigint; c_commits bigint[]; c_up_to bigint; c_after bigint; c_from timestamptz; c_to timestamptz;
begin
  v_fg := fstore.feature_group_by_id(p_feature_group_id);
  v_label := v_fg.project || '.' || v_fg.name || '@' || v_fg.version;
  perform fstore.check_drift_window(p_baseline, 'baseline'), fstore.check_drift_window(p_current, 'current');
  if p_bins is null or p_bins < 2 or p_bins > 1000 then
    raise exception 'bins must be between 2 and 1000, not %', coalesce(p_bins::text, 'NULL') using errcode = '22023';
  end if;
  if p_top_values is null or p_top_values < 1 or p_top_values > 1000 then
    raise exception 'top_values must be between 1 and 1000, not %', coalesce(p_top_values::text, 'NULL')
      using errcode = '22023';
  end if;
  perform fstore.check_group_features(v_fg.id, p_features);
  select w.* into b_commit, b_commits, b_up_to, b_after, b_from, b_to from fstore.drift_window_values(p_baseline) w;
  select w.* into c_commit, c_commits, c_up_to, c_after, c_from, c_to from fstore.drift_window_values(p_current) w;
  v_table := format('%I.%I', v_fg.project, v_fg.offline_table);
  v_windows := format(
    'base as (select %%1$s as v from %1$s where %2$s),
     cur as (select %%1$s as v from %1$s where %3$s)',
    v_table, fstore.drift_window_sql(p_baseline, 1, v_fg.event_time),
    fstore.drift_window_sql(p_current, 7, v_fg.event_time));

  for v_name, v_kind, v_integral in
    select f.name, fstore.statistics_kind(a.atttypid),
           a.atttypid in ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype)
      from fstore.features f
      join pg_attribute a on a.attrelid = v_table::regclass and a.attname = f.name and not a.attisdropped
     where f.feature_group_id = v_fg.id and not f.is_key
       and (p_features is null or f.name = any(p_features))
       and fstore.statistics_kind(a.atttypid) <> 'temporal'
     order by coalesce(array_position(p_features, f.name), f.position)
  loop
    feature := v_name;
    kind := v_kind;
    edges := null; labels := null; baseline := null; current := null;
    if v_kind in ('numeric', 'vector') then
      -- equal-width bins over the finite values of both windows (min = max: that value +- 0.5)
      v_value := case v_kind when 'vector' then format('vector_norm(%I)::float8', v_name)
                             else format('%I::float8', v_name) end;
      execute format('with ' || v_windows || ',
          finite as (select v from base where v > ''-infinity'' and v < ''infinity''
                     union all select v from cur where v > ''-infinity'' and v < ''infinity'')
        select min(v), max(v), (select count(v) from base), (select count(v) from cur) from finite', v_value)
        into v_lo, v_hi, baseline_values, current_values
        using b_commit, b_commits, b_up_to, b_after, b_from, b_to, c_commit, c_commits, c_up_to, c_after, c_from, c_to;
      v_count := p_bins;
      if v_lo is not null then
        if v_integral and v_hi - v_lo < p_bins then
          -- whole numbers over a short range: one bin per number, centred on it
          v_count := (v_hi - v_lo)::integer + 1;
          v_lo := v_lo - 0.5;
          v_hi := v_hi + 0.5;
        elsif v_lo = v_hi then
          v_lo := v_lo - 0.5;
          v_hi := v_hi + 0.5;
        end if;
        execute format('with ' || v_windows || ',
            binned as (select w, least(width_bucket(v, $13, $14, $15), $15) as bin, count(*) as k
                         from (select ''b'' as w, v from base union all select ''c'', v from cur) u
                        where v > ''-infinity'' and v < ''infinity'' group by 1, 2),
            shares as (select w, bin, k::float8 / sum(k) over (partition by w) as s from binned)
          select array(select $13 + ($14 - $13) * i / $15 from generate_series(0, $15) i order by i),
                 array(select coalesce(s.s, 0) from generate_series(1, $15) i
                         left join shares s on s.w = ''b'' and s.bin = i order by i),
                 array(select coalesce(s.s, 0) from generate_series(1, $15) i
                         left join shares s on s.w = ''c'' and s.bin = i order by i)', v_value)
          into edges, baseline, current
          using b_commit, b_commits, b_up_to, b_after, b_from, b_to, c_commit, c_commits, c_up_to, c_after, c_from, c_to,
                v_lo, v_hi, v_count;
      end if;
    else
      -- one bar per value, the p_top_values most frequent over both windows; the rest in one (label NULL)
      execute format('with ' || v_windows || ',
          hb as (select v, count(*) as k from base where v is not null group by v),
          hc as (select v, count(*) as k from cur where v is not null group by v),
          bins as (select v, coalesce(hb.k, 0) as kb, coalesce(hc.k, 0) as kc,
                          row_number() over (order by coalesce(hb.k, 0) + coalesce(hc.k, 0) desc, v) as r
                     from hb full join hc using (v)),
          lumped as (select case when r <= $13 then r else $13 + 1 end as r, case when r <= $13 then v end as v,
                            sum(kb) as kb, sum(kc) as kc from bins group by 1, 2),
          totals as (select nullif(sum(kb), 0) as tb, nullif(sum(kc), 0) as tc from lumped)
        select array(select v from lumped order by r), array(select coalesce(kb::float8 / tb, 0) from lumped, totals order by r),
               array(select coalesce(kc::float8 / tc, 0) from lumped, totals order by r),
               (select coalesce(sum(kb), 0)::bigint from lumped), (select coalesce(sum(kc), 0)::bigint from lumped)',
        format('%I::text', v_name))
        into labels, baseline, current, baseline_values, current_values
        using b_commit, b_commits, b_up_to, b_after, b_from, b_to, c_commit, c_commits, c_up_to, c_after, c_from, c_to,
              p_top_values;
    end if;
    return next;
  end loop;
end $$;
comment on function fstore.drift_histograms(bigint,jsonb,jsonb,text[],integer,integer) is
  'What a drift report draws: per feature (p_features, default all but temporal ones), the shares of the baseline''s and the current window''s non-NULL values over one set of bins (windows as fstore.feature_drift takes them, read with the caller''s rights). Numeric (and vectors, by L2 norm): p_bins equal-width bins over [min, max] of the finite values of both windows, edges p_bins + 1 values (the last bin closed, as numpy.histogram); integer columns whose range is shorter than p_bins get one bin per number instead (edges at n - 0.5); categorical: labels, one per value, the p_top_values most frequent over both windows (ties by value), then NULL for the rest together. baseline and current are shares (each sums to 1 when the window has values; zeros otherwise); baseline_values and current_values count the values binned. For display: the measures (PSI at quantile bins, KS, ...) are fstore.feature_drift''s.';

grant execute on function fstore.drift_histograms(bigint,jsonb,jsonb,text[],integer,integer) to public;
reset role;
