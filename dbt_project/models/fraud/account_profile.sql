{{ config(
    materialized='feature_group',
    keys=['account_id'],
    event_time='event_time',
    version=1,
    online=true,
    commit_mode='merge',
    tags=['aml', 'kyc'],
    validation=[
      {'rule': 'unique', 'columns': ['account_id']},
      {'rule': 'accepted_values', 'column': 'account_type', 'values': ['personal', 'business']},
      {'rule': 'accepted_values', 'column': 'risk_segment', 'values': ['low', 'medium', 'high']},
      {'rule': 'regex', 'column': 'country', 'pattern': '^[A-Z]{2}$'},
      {'rule': 'min', 'column': 'customer_age', 'value': 18},
    ],
) }}

-- Who holds each account, as known when it was opened.
select account_id,
       opened_at as event_time,
       country,
       account_type,
       kyc_level,
       risk_segment,
       customer_age,
       monthly_income,
       is_pep
  from {{ source('raw', 'accounts') }}
