-- Projects' owner roles may create temporary tables (dbt stages incremental models and
-- snapshots there as the owner role). New projects get it from fstore.create_project.
do $$
declare
  v_project text;
begin
  for v_project in select name from fstore.projects loop
    execute format('grant temporary on database %I to %I', current_database(), v_project || '__owner');
  end loop;
end $$;
