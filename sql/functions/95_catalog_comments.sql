-- What psql's \d+ and \dv+ say of fstore's catalog (COMMENT ON is repeatable: edit here).

set role fstore_control;

comment on schema fstore is
  'fstore''s catalog and control plane. Start with: \df+ fstore.* (every function says what it does), fstore.feature_group_overview, fstore.historical_features(...)';
comment on table fstore.projects is 'Projects: each is a schema of the same name with its own roles (project__owner, __data_owner, __data_scientist)';
comment on table fstore.members is 'People in projects: one login role project__user each, logging in only with their own TLS certificate';
comment on table fstore.shares is 'Projects shared with other projects, read-only or read-write; nothing is copied (fstore.share_project)';
comment on table fstore.blocked_users is 'People the platform admin has blocked everywhere (the admin only)';
comment on table fstore.certificates is 'The CA registry as the database knows it: every certificate issued, revoked (revoked_at) and in the published CRL (crl_published_at)';
comment on table fstore.audit_log is 'Append-only record of every control action, commit, drop and export, with the certificate serial and application of the session';
comment on table fstore.row_policies is 'A project''s declared row policies (policies/<project>.yml): the structured predicate, who it binds, and the entity key of entity policies';
comment on table fstore.feature_groups is 'Feature-group versions: keys, event time, online or not, TTL, options (validation rules...), lineage; tables <name>__v<version>[__online]';
comment on table fstore.features is 'The features (and keys) of each feature-group version, in column order, with their descriptions';
comment on table fstore.commits is 'Every commit of rows to a feature group: who, which certificate and application, rows offline and online, event-time range, validation; open only inside its own transaction, then immutable';
comment on table fstore.commit_statistics is 'Per-feature statistics of each commit (shown only to readers no row policy binds; see fstore.batch_statistics)';
comment on table fstore.feature_group_locks is 'One row per feature group: its commits take turns on this row''s lock (fstore.lock_feature_group)';
comment on table fstore.managed_tables is 'fstore''s own tables in project schemas (feature-group history, online tables, training datasets) and the shape they keep';
comment on table fstore.training_datasets is 'Training-dataset versions: the stored point-in-time join <name>__td<version>, with its provenance (feature groups, commits seen, spine hash, label, split)';
comment on table fstore.training_dataset_exports is 'Files training datasets were written to, each recorded by the session that wrote it';
comment on table fstore.feature_views is 'Feature views: what a model consumes (pinned feature references, label, serving keys, passed request-time features, transformations), for training and serving alike';
comment on table fstore.feature_view_fits is 'Transformation parameters of a feature view fitted by fstore on one of its training datasets'' training split';
comment on table fstore.served_vectors is 'Vectors served from feature views that log (keys, passed features, vector, who, when): read by the view''s project''s Data Owners';
comment on table fstore.erasures is 'Erasures of an entity (fstore.forget, GDPR article 17), one per transaction: the keys'' names and digest (their values only while open), the tables targeted, the report; the one audited exception to append-only history';
comment on table fstore.erased_rows is 'Rows an erasure removed, per table (counted by fstore''s own trigger) with the commits they came from; get_training_dataset of an older version says how many of its rows were erased';
comment on table fstore.sensitive_features is 'Features marked sensitive (per project, feature group and feature): read only by the project''s Data Owners and the grantees of fstore.sensitive_grants';
comment on table fstore.sensitive_grants is 'Who may read a sensitive feature besides the project''s Data Owners, from policies/: a project-user of the project or its data_scientist group';
comment on view fstore.feature_group_overview is 'One row per feature-group version you can see, with its commit count, rows and last commit';

comment on column fstore.commits.state is 'open: begun in transaction xact of backend backend_pid, the only one whose rows the group''s tables take; done: finished, immutable';
comment on column fstore.row_policies.predicate_tree is 'The predicate as a structured tree; fstore.predicate_sql renders it (the text in predicate is for reading only)';
comment on column fstore.training_datasets.feature_groups is '[{id, project, name, version, max_commit, commits, features: [{name, output}], key_columns}]: what the dataset read';

reset role;
