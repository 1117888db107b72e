-- Row-level security of the catalog: a project-user sees their project's rows and what
-- is shared with it; the admin sees the platform's; stored statistics only readers no
-- row policy binds. (Repeatable: each policy is dropped and created again.)

set role fstore_control;

drop policy if exists visible on fstore.projects;
create policy visible on fstore.projects for select
  using ((select fstore.session_is_admin()) or name in (select unnest(fstore.visible_projects())));

drop policy if exists own_project on fstore.members;
create policy own_project on fstore.members for select
  using ((select fstore.session_is_admin()) or project = (select fstore.session_project()));

drop policy if exists visible on fstore.shares;
create policy visible on fstore.shares for select
  using ((select fstore.session_is_admin()) or project = (select fstore.session_project())
         or with_project = (select fstore.session_project()));

drop policy if exists admin_only on fstore.blocked_users;
create policy admin_only on fstore.blocked_users for select
  using ((select fstore.session_is_admin()));

drop policy if exists own_certificates on fstore.certificates;
create policy own_certificates on fstore.certificates for select
  using ((select fstore.session_is_admin()) or role_name = session_user::text);

-- a project's audit records, from its creation on: a new project under the name of a
-- deleted one does not read the deleted one's history (the admin reads all of it)
drop policy if exists own_project on fstore.audit_log;
create policy own_project on fstore.audit_log for select
  using ((select fstore.session_is_admin())
         or (project = (select fstore.session_project())
             and at >= (select p.created_at from fstore.projects p where p.name = (select fstore.session_project()))));

drop policy if exists own_project on fstore.row_policies;
create policy own_project on fstore.row_policies for select
  using ((select fstore.session_is_admin()) or project = (select fstore.session_project()));

drop policy if exists visible on fstore.managed_tables;
create policy visible on fstore.managed_tables for select using (project in (select unnest(fstore.visible_projects())));

drop policy if exists visible on fstore.feature_groups;
create policy visible on fstore.feature_groups for select
  using (project in (select unnest(fstore.visible_projects())));

drop policy if exists visible on fstore.features;
create policy visible on fstore.features for select using (fstore.visible_feature_group(feature_group_id));

drop policy if exists visible on fstore.commits;
create policy visible on fstore.commits for select using (fstore.visible_feature_group(feature_group_id));

drop policy if exists visible on fstore.training_datasets;
create policy visible on fstore.training_datasets for select
  using (project in (select unnest(fstore.visible_projects())));

drop policy if exists visible on fstore.training_dataset_exports;
create policy visible on fstore.training_dataset_exports for select
  using (exists (select 1 from fstore.training_datasets t where t.id = training_dataset_id));

drop policy if exists visible on fstore.commit_statistics;
create policy visible on fstore.commit_statistics for select
  using (exists (select 1 from fstore.commits c where c.id = commit_id
                  and fstore.statistics_visible(c.feature_group_id)));

drop policy if exists visible on fstore.feature_views;
create policy visible on fstore.feature_views for select
  using (project in (select unnest(fstore.visible_projects())));
drop policy if exists visible on fstore.feature_view_fits;
create policy visible on fstore.feature_view_fits for select
  using (exists (select 1 from fstore.feature_views v where v.id = feature_view_id)
         and fstore.fit_visible(training_dataset_id, fitted_by));
drop policy if exists fitted_by_the_builder on fstore.feature_view_fits;
create policy fitted_by_the_builder on fstore.feature_view_fits for insert to fstore_builder with check (true);
-- served vectors hold feature values of entities: the view's project's Data Owners read them
drop policy if exists data_owners on fstore.served_vectors;
create policy data_owners on fstore.served_vectors for select
  using (exists (select 1 from fstore.feature_views v join fstore.members m on m.project = v.project
                  where v.id = feature_view_id and m.role_name = session_user::text and m.project_role = 'data_owner'));

reset role;
