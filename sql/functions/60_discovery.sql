-- Discovery: an overview of feature groups and full-text search over the catalog.
-- Both run with the caller's rights, so the catalog's row-level security limits them
-- to the caller's project and the projects shared with it.

set role fstore_control;

-- One row per feature-group version the caller can see, with its commit totals.
create or replace view fstore.feature_group_overview with (security_invoker = true) as
  select g.id, g.project, g.name, g.version, g.entity_keys, g.event_time, g.online, g.ttl,
         g.description, g.tags, g.offline_table, g.online_table, g.upstream, g.created_at, g.created_by,
         coalesce(c.commits, 0) as commits, coalesce(c.rows, 0) as rows, c.last_commit_id, c.last_commit_at
    from fstore.feature_groups g
    left join lateral (
      select count(*) as commits, sum(x.rows)::bigint as rows, max(x.id) as last_commit_id,
             max(x.committed_at) as last_commit_at
        from fstore.commits x where x.feature_group_id = g.id
    ) c on true;

grant select on fstore.feature_group_overview to public;

create or replace function fstore.feature_group_document(p_id bigint) returns tsvector
language sql stable set search_path = pg_catalog, fstore, pg_temp as $$
  select setweight(to_tsvector('english', replace(g.name, '_', ' ')), 'A')
      || setweight(to_tsvector('english', replace(array_to_string(g.tags, ' '), '_', ' ')), 'B')
      || setweight(to_tsvector('english', coalesce((select string_agg(replace(f.name, '_', ' '), ' ')
                                                      from fstore.features f where f.feature_group_id = g.id), '')), 'B')
      || setweight(to_tsvector('english', g.description), 'C')
      || setweight(to_tsvector('english', coalesce((select string_agg(f.description, ' ')
                                                      from fstore.features f where f.feature_group_id = g.id), '')), 'D')
    from fstore.feature_groups g where g.id = p_id
$$;
comment on function fstore.feature_group_document(bigint) is
  'The text a feature group is found by, weighted: name (A), tags and feature names (B), description (C), feature descriptions (D). Underscores split words (txn_count -> txn count).';

create or replace function fstore.search_feature_groups(p_text text, p_limit integer default 50)
returns table (project text, name text, version integer, versions integer[], description text, tags text[],
               online boolean, features text[], matched_features text[], rank real)
language plpgsql stable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_query tsquery;
  v_words boolean;
  v_like text;
begin
  if p_text is null or btrim(p_text) = '' then
    raise exception 'search text is empty' using errcode = '22023';
  end if;
  v_query := websearch_to_tsquery('english', replace(p_text, '_', ' '));
  v_words := numnode(v_query) > 0;
  v_like := '%' || replace(replace(replace(btrim(p_text), '\', '\\'), '%', '\%'), '_', '\_') || '%';
  return query
  with docs as (
    select g.id, g.project, g.name, g.version, g.description, g.tags, g.online,
           fstore.feature_group_document(g.id) as doc,
           (select array_agg(f.name order by f.position) from fstore.features f where f.feature_group_id = g.id) as features
      from fstore.feature_groups g
  ), hits as (
    select d.*,
           (select array_agg(f.name order by f.position) from fstore.features f
             where f.feature_group_id = d.id
               and (f.name ilike v_like
                    or (v_words and to_tsvector('english', replace(f.name, '_', ' ') || ' ' || f.description) @@ v_query)))
             as matched,
           (case when v_words then ts_rank(d.doc, v_query) else 0 end
            + case when d.name ilike v_like then 1.0 else 0 end
            + case when exists (select 1 from unnest(d.tags) t where t ilike v_like) then 0.5 else 0 end)::real as score
      from docs d
     where (v_words and d.doc @@ v_query)
        or d.name ilike v_like
        or exists (select 1 from unnest(d.tags) t where t ilike v_like)
        or exists (select 1 from unnest(d.features) f where f ilike v_like)
  ), latest as (
    select distinct on (h.project, h.name) h.*,
           array_agg(h.version) over (partition by h.project, h.name) as all_versions
      from hits h
     order by h.project, h.name, h.version desc
  )
  select l.project, l.name, l.version, (select array_agg(v order by v desc) from unnest(l.all_versions) v),
         l.description, l.tags, l.online, l.features, coalesce(l.matched, '{}'), l.score
    from latest l
   order by l.score desc, l.project, l.name
   limit greatest(coalesce(p_limit, 50), 1);
end $$;
comment on function fstore.search_feature_groups(text,integer) is
  'Search feature groups by words (web-search syntax: "quoted phrase", or, -not) and by substring of a group, tag or feature name (so partial names like ''txn_cou'' match). One row per feature group (its latest matching version), best match first.';

grant execute on function
  fstore.feature_group_document(bigint),
  fstore.search_feature_groups(text,integer)
  to public;
reset role;
