{{ config(
    materialized='feature_group',
    keys=['account_id'],
    event_time='event_time',
    version=1,
    online=true,
    ttl='7 days',
    commit_mode='merge',
    tags=['aml', 'velocity'],
    validation=[
      {'rule': 'not_null', 'column': 'tx_amount_7d'},
      {'rule': 'min', 'column': 'tx_count_1h', 'value': 1},
      {'rule': 'min', 'column': 'tx_amount_1h', 'value': 0},
    ],
    validation_policy='strict',
) }}

-- Velocity of each account at each of its transactions: counts and sums over the
-- trailing 1 hour, 1 day and 7 days (inclusive of the transaction itself; two
-- transactions at the same instant get the same values).
-- Incremental: a run reads the transactions from a week before the last commit (the
-- windows' inputs) and outputs only rows after it, whose windows are complete; the
-- first run (and --full-refresh) computes everything.
with recent as (
    select account_id, event_time, amount
      from {{ ref('stg_transactions') }}
     where event_time > {{ fstore.watermark(lookback='7 days') }}
),
velocity as (
    select account_id,
           event_time,
           count(*) over last_hour    as tx_count_1h,
           sum(amount) over last_hour as tx_amount_1h,
           count(*) over last_day     as tx_count_1d,
           sum(amount) over last_day  as tx_amount_1d,
           count(*) over last_week    as tx_count_7d,
           sum(amount) over last_week as tx_amount_7d
      from recent
    window last_hour as (partition by account_id order by event_time
                         range between interval '1 hour' preceding and current row),
           last_day  as (partition by account_id order by event_time
                         range between interval '1 day' preceding and current row),
           last_week as (partition by account_id order by event_time
                         range between interval '7 days' preceding and current row)
)
select *
  from velocity
 where event_time > {{ fstore.watermark() }}
