{{ config(
    materialized='feature_group',
    keys=['account_id'],
    event_time='event_time',
    version=1,
    online=true,
    commit_mode='merge',
    tags=['aml', 'network'],
    validation=[{'rule': 'min', 'column': 'counterparties_1d', 'value': 1}],
    validation_policy='warn',
) }}

-- How many different counterparties each account pays, known at the end of each
-- day it was active: that day, the trailing 7 days, new ones, and all so far.
-- Distinct counts over a sliding window without a self-join: each (account,
-- counterparty, day) counts +1 from that day until the same counterparty is paid
-- again or 7 days pass, whichever is first; a running sum of these steps is the
-- number of distinct counterparties in the trailing 7 days.
with daily_pairs as (
    select account_id, counterparty_id, event_day
      from {{ ref('stg_transactions') }}
     group by account_id, counterparty_id, event_day
),
pairs as (
    select account_id, event_day,
           lead(event_day) over same_pair as next_day,
           lag(event_day) over same_pair is null as first_time
      from daily_pairs
    window same_pair as (partition by account_id, counterparty_id order by event_day)
),
steps as (
    select account_id, event_day, 1 as step, 1 as paid, first_time::int as new
      from pairs
    union all
    select account_id, least(event_day + interval '7 days', next_day), -1, 0, 0
      from pairs
),
per_day as (
    select account_id, event_day, sum(step) as step, sum(paid) as counterparties_1d,
           sum(new) as new_counterparties_1d
      from steps
     group by account_id, event_day
),
running as (
    select account_id,
           event_day,
           counterparties_1d,
           sum(step) over by_day as counterparties_7d,
           new_counterparties_1d,
           sum(new_counterparties_1d) over by_day as counterparties_total
      from per_day
    window by_day as (partition by account_id order by event_day)
)
select account_id,
       event_day + interval '1 day' as event_time,
       counterparties_1d,
       counterparties_7d,
       new_counterparties_1d,
       counterparties_total
  from running
 where counterparties_1d > 0  -- days the account was active (not just a window closing)
