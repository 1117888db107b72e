{#-
  Views that the database accepts. fstore's DDL guard refuses, in a project schema, a
  view that is not security_invoker (such a view reads its tables with its owner's
  rights, past the readers' row policies) and any materialized view. dbt-postgres 1.11
  creates a `view` model as `create view <model>__dbt_tmp as (...)`, renames the old
  view to <model>__dbt_backup and the new one to <model>, then drops the backup; a
  rename keeps the view's options, so the model's view stays security_invoker (the guard
  checks again at every CREATE and ALTER VIEW). postgres__create_view_as is dbt's
  default__create_view_as with the option added; dbt calls it for your models through
  the dispatch config. (dbt 1.11 replaces a view model only by this rename; its
  get_replace_view_sql is reached only from the materialized_view materialization,
  which the database refuses anyway.)
-#}
{% macro postgres__create_view_as(relation, sql) -%}
  {%- set sql_header = config.get('sql_header', none) -%}

  {{ sql_header if sql_header is not none }}
  create view {{ relation.render() }}
    {% set contract_config = config.get('contract') %}
    {% if contract_config.enforced %}
      {{ get_assert_columns_equivalent(sql) }}
    {%- endif %}
  with (security_invoker = true)
  as (
    {{ sql }}
  );
{%- endmacro %}
