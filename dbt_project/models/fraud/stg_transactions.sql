{{ config(materialized='ephemeral') }}

-- Transactions as the feature models read them (ephemeral: inlined as a CTE, no view).
select transaction_id,
       account_id,
       counterparty_id,
       amount,
       channel,
       event_time,
       date_trunc('day', event_time) as event_day
  from {{ source('raw', 'transactions') }}
