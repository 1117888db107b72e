{{ config(
    materialized='feature_group',
    keys=['account_id'],
    event_time='event_time',
    version=1,
    online=true,
    commit_mode='incremental',
    tags=['aml', 'behaviour'],
    validation=[
      {'rule': 'min', 'column': 'night_share_7d', 'value': 0},
      {'rule': 'max', 'column': 'night_share_7d', 'value': 1},
    ],
) }}

-- When each account transacts (UTC), known at the end of each day it was active:
-- share of night-time (00-06h) and weekend transactions and the mean hour, over
-- that day and the trailing 7 days. Incremental: a run reads the transactions from
-- 8 days before the last commit (the trailing week's whole days); commit_mode
-- incremental keeps only the days after it.
with daily as (
    select account_id,
           event_day,
           count(*)::float8 as tx_count,
           count(*) filter (where extract(hour from event_time) < 6)::float8 as night_count,
           count(*) filter (where extract(isodow from event_time) >= 6)::float8 as weekend_count,
           sum(extract(hour from event_time) + extract(minute from event_time) / 60.0)::float8 as hour_sum
      from {{ ref('stg_transactions') }}
     where event_time > {{ fstore.watermark(lookback='8 days') }}  -- the trailing week's inputs
     group by account_id, event_day
)
select account_id,
       event_day + interval '1 day' as event_time,
       night_count / tx_count as night_share_1d,
       sum(night_count) over last_week / sum(tx_count) over last_week as night_share_7d,
       sum(weekend_count) over last_week / sum(tx_count) over last_week as weekend_share_7d,
       hour_sum / tx_count as mean_hour_1d,
       sum(hour_sum) over last_week / sum(tx_count) over last_week as mean_hour_7d
  from daily
window last_week as (partition by account_id order by event_day
                     range between interval '6 days' preceding and current row)
