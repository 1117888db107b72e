{#-
  fstore's versions of dbt's macros (generate_alias_name, create_view_as) serve your
  models only through the dispatch config of your project. Without it, dbt names a feature group's relation after the model (ref() then
  misses its table) and creates views the database refuses. check_dispatch runs before
  every `dbt run`, `build`, `test`, `seed` and `snapshot` (the package's on-run-start
  hook) and names the fix.
-#}
{% macro dispatch_hint() -%}
  {{ return("fstore's dbt macros are not dispatched for project " ~ project_name ~ '. Add to its dbt_project.yml:'
            ~ "\n\n  dispatch:\n    - macro_namespace: dbt\n      search_order: ['" ~ project_name ~ "', 'fstore', 'dbt']\n") }}
{%- endmacro %}

{% macro check_dispatch() -%}
  {%- if execute -%}
    {#- adapter.dispatch takes string literals only: one call per macro -#}
    {%- set resolved = {'generate_alias_name': adapter.dispatch('generate_alias_name', 'dbt'),
                        'create_view_as': adapter.dispatch('create_view_as', 'dbt')} -%}
    {%- for name, macro in resolved.items() -%}
      {%- if macro.macro.package_name in ['dbt', 'dbt_postgres'] -%}
        {{ exceptions.raise_compiler_error(fstore.dispatch_hint()
             ~ "Without it dbt's own " ~ name ~ ' serves your models: feature groups would be named without their '
             ~ 'version, and views created without security_invoker, which the database refuses.') }}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
{%- endmacro %}
