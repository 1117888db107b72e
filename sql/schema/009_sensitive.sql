-- Versioned schema migration: sensitive features. A feature marked sensitive is readable
-- only by the project's Data Owners and the project-users (or the data_scientist group) a
-- grant in policies/<project>.yml names; everyone else (its Data Scientists, the members of
-- projects it is shared with) is refused the column, in every table that holds it (offline,
-- online, training datasets), in statistics, drift, slices, exports and feature views.
--
-- The mark belongs to the feature group's NAME and the feature's name, not to one version:
-- every version of the group, past and future (a dbt run that makes version 2), carries
-- it; unmarking restores the column everywhere. The functions are in
-- sql/functions/42_sensitive.sql, the catalog policies of these tables too.

set role fstore_control;

create table fstore.sensitive_features (
  project        text not null references fstore.projects (name) on delete cascade,
  feature_group  text not null,   -- the group's name: all its versions
  feature        text not null,
  marked_at      timestamptz not null default now(),
  marked_by      text not null default session_user,
  primary key (project, feature_group, feature)
);

-- Who may read a sensitive feature besides the project's Data Owners (from policies/):
-- a project-user of the project (grantee = user name) or its data_scientist group.
create table fstore.sensitive_grants (
  project        text not null references fstore.projects (name) on delete cascade,
  name           text not null,   -- the grant's name in the policy file
  feature_group  text not null,
  feature        text not null,
  grantee        text not null,   -- a user name of the project, or 'data_scientist'
  primary key (project, name, feature_group, feature, grantee)
);

alter table fstore.sensitive_features enable row level security;
alter table fstore.sensitive_grants enable row level security;
grant select on fstore.sensitive_features, fstore.sensitive_grants to public;

reset role;
