{#-
  Reading a feature_group model's config. Every key, its meaning and default:

    keys               entity key column(s): a name or a list (composite)   required
    event_time         the event-time column (timestamptz; timestamp is UTC)  'event_time'
    version            feature group version, a positive integer            1
    online             keep an online table (latest row per entity)         false
    ttl                how long a feature value is valid, e.g. '7 days'     none
    description        the feature group's description                      the model's description
    tags               dbt tags of the model become the feature group's tags
    statistics         compute statistics at every commit                   true
    validation         list of rules, e.g. [{'rule': 'not_null', 'column': 'amount'}]   []
    validation_policy  strict (a failing rule aborts the run) | warn        'strict'
    hnsw               online HNSW index on vector features: ['embedding'] or
                       {'embedding': 'vector_cosine_ops'} (needs online=true)   none
    on_schema_change   a column new in the model, as dbt's incremental models:
                       ignore (not stored; logged) | append_new_columns (becomes a
                       feature of this version; earlier rows read NULL) | fail  'ignore'
    commit_mode        merge (skip rows whose keys+event_time exist) |
                       incremental (only rows after the last commit's max event_time) |
                       append (every row)                                    'merge'
  Column descriptions come from the model's YAML (`columns:`), and so do sensitive features:
  a column with `meta: {sensitive: true}` (or `config: {meta: {sensitive: true}}`) is marked
  sensitive for every version of the group (fstore.set_sensitive; docs/sensitive.md);
  `sensitive: false` unmarks it; a column without the key keeps its mark as it is.
-#}

{% macro feature_group_spec(model) %}
  {%- set version = config.get('version') or 1 -%}
  {%- if not modules.re.match('^[1-9][0-9]{0,8}$', version | string) -%}
    {{ exceptions.raise_compiler_error('feature group ' ~ model.name ~ ': `version` must be a positive integer, not '
                                       ~ (version | string)) }}
  {%- endif -%}
  {#- the relation is <name>__v<version> (fstore's generate_alias_name, through the dispatch config) -#}
  {%- set suffix = '__v' ~ (version | string) -%}
  {%- if not (model.alias or '').endswith(suffix) or model.alias | length <= suffix | length -%}
    {{ exceptions.raise_compiler_error('feature group ' ~ model.name ~ ': its relation is ' ~ model.alias ~ ', not '
        ~ model.name ~ suffix ~ ': ' ~ fstore.dispatch_hint()) }}
  {%- endif -%}
  {%- set name = model.alias[:-(suffix | length)] -%}

  {%- set keys = config.get('keys') -%}
  {%- if keys is string -%}{%- set keys = [keys] -%}{%- endif -%}
  {%- if keys is none or keys is mapping or keys | length == 0 -%}
    {{ exceptions.raise_compiler_error('feature group ' ~ name ~ ': set `keys` to the entity key column(s), '
                                       ~ "e.g. config(keys=['account_id'])") }}
  {%- endif -%}
  {%- for key in keys -%}
    {%- if key is not string -%}
      {{ exceptions.raise_compiler_error('feature group ' ~ name ~ ': `keys` must be column names, not ' ~ key) }}
    {%- endif -%}
  {%- endfor -%}

  {%- set event_time = config.get('event_time') or 'event_time' -%}
  {%- if event_time is not string or event_time in keys -%}
    {{ exceptions.raise_compiler_error('feature group ' ~ name ~ ': `event_time` must name one column that is not a key') }}
  {%- endif -%}

  {%- set commit_mode = config.get('commit_mode') or 'merge' -%}
  {%- if commit_mode not in ['merge', 'incremental', 'append'] -%}
    {{ exceptions.raise_compiler_error('feature group ' ~ name ~ ': `commit_mode` must be merge, incremental or append, not '
                                       ~ commit_mode) }}
  {%- endif -%}

  {%- set on_schema_change = config.get('on_schema_change') or 'ignore' -%}
  {%- if on_schema_change not in ['ignore', 'append_new_columns', 'fail'] -%}
    {{ exceptions.raise_compiler_error('feature group ' ~ name ~ ': `on_schema_change` must be ignore, append_new_columns '
                                       ~ 'or fail, not ' ~ on_schema_change
                                       ~ ' (dropping or retyping columns needs a new version)') }}
  {%- endif -%}

  {%- set policy = config.get('validation_policy') or 'strict' -%}
  {%- if policy not in ['strict', 'warn'] -%}
    {{ exceptions.raise_compiler_error('feature group ' ~ name ~ ': `validation_policy` must be strict or warn, not ' ~ policy) }}
  {%- endif -%}
  {%- set rules = config.get('validation') or [] -%}
  {%- if rules is mapping or rules is string -%}
    {{ exceptions.raise_compiler_error('feature group ' ~ name ~ ': `validation` must be a list of rules like '
                                       ~ "{'rule': 'not_null', 'column': 'amount'}") }}
  {%- endif -%}

  {%- set online = config.get('online', false) -%}
  {%- set online = false if online is none else online -%}
  {%- set statistics = config.get('statistics', true) -%}
  {%- set statistics = true if statistics is none else statistics -%}
  {%- if online is not boolean or statistics is not boolean -%}
    {{ exceptions.raise_compiler_error('feature group ' ~ name ~ ': `online` and `statistics` must be true or false') }}
  {%- endif -%}

  {%- set ttl = config.get('ttl') -%}
  {%- if ttl is number -%}{%- set ttl = (ttl | string) ~ ' seconds' -%}{%- endif -%}

  {%- set feature_descriptions = {} -%}
  {%- set sensitive = {'mark': [], 'unmark': []} -%}
  {%- for column in model.columns.values() -%}
    {%- if column.description -%}
      {%- do feature_descriptions.update({column.name: column.description}) -%}
    {%- endif -%}
    {%- set flag = (column.meta or {}).get('sensitive') -%}
    {%- if flag is none and column.config is mapping -%}
      {%- set flag = (column.config.get('meta') or {}).get('sensitive') -%}
    {%- endif -%}
    {%- if flag is not none and flag is not boolean -%}
      {{ exceptions.raise_compiler_error('feature group ' ~ name ~ ': column ' ~ column.name
                                         ~ ': meta `sensitive` must be true or false') }}
    {%- endif -%}
    {%- if flag is not none -%}
      {%- do sensitive['mark' if flag else 'unmark'].append(column.name) -%}
    {%- endif -%}
  {%- endfor -%}

  {{ return({
      'project': this.schema,
      'name': name,
      'version': version | int,
      'keys': keys | list,
      'event_time': event_time,
      'online': online,
      'ttl': ttl,
      'description': config.get('description') or model.description or '',
      'tags': model.tags | list,
      'statistics': statistics,
      'validation': rules | list,
      'validation_policy': policy,
      'commit_mode': commit_mode,
      'hnsw': config.get('hnsw'),
      'on_schema_change': on_schema_change,
      'feature_descriptions': feature_descriptions,
      'sensitive': sensitive,
      'upstream': fstore.dbt_upstream(model.depends_on.nodes),
      'dbt_node': model.unique_id,
  }) }}
{% endmacro %}

{#- "project.name version 3", for messages. -#}
{% macro display_name(spec) -%}
  {{ return(spec['project'] ~ '.' ~ spec['name'] ~ ' version ' ~ spec['version']) }}
{%- endmacro %}

{#- The offline table of a version: <name>__v<version> (dbt's relation for the model). -#}
{% macro feature_group_table(name, version) -%}
  {{ return(name ~ '__v' ~ (version | string)) }}
{%- endmacro %}

{#-
  A value as a jsonb literal: the one way values from the model's config reach SQL.
  Quotes are doubled; fstore.act_as_session_user pins standard_conforming_strings on,
  so backslashes are plain characters.
-#}
{% macro jsonb(value) -%}
  {{ return("'" ~ (tojson(value) | replace("'", "''")) ~ "'::jsonb") }}
{%- endmacro %}

{#- A temporary relation as a regclass expression. -#}
{% macro regclass(relation) -%}
  {{ return("'pg_temp." ~ adapter.quote(relation.identifier) ~ "'::regclass") }}
{%- endmacro %}
