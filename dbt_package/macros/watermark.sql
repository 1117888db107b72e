{#-
  fstore.watermark(lookback=none): the latest event time this model's feature group
  version has committed, as a SQL timestamptz expression, so a model computes only what
  is new instead of its whole history on every run:

    with recent as (
        select * from {{ ref('stg_transactions') }}
         where event_time > {{ fstore.watermark(lookback='7 days') }}  -- inputs of the windows
    )
    select ... from recent ...
    where event_time > {{ fstore.watermark() }}                       -- only new rows out

  `lookback` moves it back by an interval (for windows that need earlier inputs).
  It is '-infinity' (everything) on the first run, with `dbt run --full-refresh`, and
  when dbt only parses or compiles without a database. Rows that arrive late (event time
  at or before the watermark) are not recomputed by such a model: `--full-refresh`
  recomputes all and commits with merge: only the rows not yet stored are added.
-#}
{% macro watermark(lookback=none) %}
  {%- set everything = "'-infinity'::timestamptz" -%}
  {%- if not execute -%}
    {{ return(everything) }}
  {%- endif -%}
  {%- if config.get('materialized') != 'feature_group' -%}
    {{ exceptions.raise_compiler_error(model.name ~ ': fstore.watermark() is the latest event time a feature group '
        ~ "has committed; it works only in a model with materialized='feature_group'") }}
  {%- endif -%}
  {%- if should_full_refresh() -%}
    {{ return(everything) }}
  {%- endif -%}
  {%- set spec = fstore.feature_group_spec(model) -%}
  {% set query -%}
    select max(c.max_event_time)::text
      from fstore.commits c
      join fstore.feature_groups g on g.id = c.feature_group_id,
           (select {{ fstore.jsonb({'project': spec['project'], 'name': spec['name'], 'version': spec['version']}) }} as s) p
     where g.project = p.s->>'project' and g.name = p.s->>'name' and g.version = (p.s->>'version')::int
  {%- endset %}
  {%- set latest = run_query(query).rows[0][0] -%}
  {%- if latest is none -%}
    {{ return(everything) }}
  {%- endif -%}
  {%- set expression = "'" ~ (latest | replace("'", "''")) ~ "'::timestamptz" -%}
  {%- if lookback is not none -%}
    {%- if not modules.re.match('^[0-9]+ (second|minute|hour|day|week|month)s?$', lookback | string) -%}
      {{ exceptions.raise_compiler_error(fstore.display_name(spec) ~ ': fstore.watermark lookback must look like '
                                         ~ "'7 days' or '1 hour', not " ~ (lookback | string)) }}
    {%- endif -%}
    {%- set expression = "(" ~ expression ~ " - interval '" ~ lookback ~ "')" -%}
  {%- endif -%}
  {{ return(expression) }}
{% endmacro %}
