-- Who is calling: the certificate identity (session_user), its project, its
-- application (from the certificate serial), and what it may see; names and their
-- checks; the audit log; the project lock; retiring certificates.

set role fstore_control;

create or replace function fstore.check_project_name(p_name text) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_name is null or p_name !~ '^[a-z][a-z0-9_]{0,29}[a-z0-9]$' or position('__' in p_name) > 0 then
    raise exception 'invalid project name %: use 2-31 characters a-z, 0-9 and _, starting with a letter, not ending with _, without "__"',
      coalesce(quote_literal(left(p_name, 80)), 'NULL') using errcode = '22023';
  end if;
  if p_name in ('postgres', 'public', 'information_schema') or p_name ~ '^(pg_|fstore)' then
    raise exception 'invalid project name %: it is reserved (postgres, public, information_schema, pg_*, fstore*)',
      quote_literal(p_name) using errcode = '22023';
  end if;
  return p_name;
end $$;
comment on function fstore.check_project_name(text) is
  'Return the name if it is a valid project name (2-31 characters a-z, 0-9 and _, starting with a letter, not ending with _, no "__"; not postgres, public, information_schema, pg_* or fstore*); else an error that names it.';

create or replace function fstore.check_user_name(p_name text) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_name is null or p_name !~ '^[a-z][a-z0-9_]*$' or position('__' in p_name) > 0
     or p_name in ('owner', 'data_owner', 'data_scientist') or octet_length(p_name) > 60 then
    raise exception 'invalid user name %: use a-z, 0-9 and _, starting with a letter, without "__", not owner, data_owner or data_scientist',
      coalesce(quote_literal(left(p_name, 80)), 'NULL') using errcode = '22023';
  end if;
  return p_name;
end $$;
comment on function fstore.check_user_name(text) is
  'Return the name if it is a valid user name (a-z, 0-9 and _, starting with a letter, no "__", not owner, data_owner or data_scientist, at most 60 bytes); else an error that names it.';

create or replace function fstore.project_user_role(p_project text, p_user text) returns text
language plpgsql immutable set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_role text := fstore.check_project_name(p_project) || '__' || fstore.check_user_name(p_user);
begin
  if octet_length(v_role) > 63 then
    raise exception 'role name % is longer than 63 bytes', quote_literal(v_role) using errcode = '22023';
  end if;
  return v_role;
end $$;
comment on function fstore.project_user_role(text,text) is
  'project__user, checked against PostgreSQL''s 63-byte identifier limit';

create or replace function fstore.owner_role(p_project text) returns text
language sql immutable set search_path = pg_catalog, fstore, pg_temp as $$
  select fstore.check_project_name(p_project) || '__owner'
$$;
comment on function fstore.owner_role(text) is
  'The role that owns a project''s schema and every object in it.';

create or replace function fstore.project_role_kind(p_role text) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_role in ('data-owner', 'data_owner') then return 'data_owner'; end if;
  if p_role in ('data-scientist', 'data_scientist') then return 'data_scientist'; end if;
  raise exception 'invalid project role %: use data-owner or data-scientist',
    coalesce(quote_literal(left(p_role, 80)), 'NULL') using errcode = '22023';
end $$;
comment on function fstore.project_role_kind(text) is
  'data_owner or data_scientist, from data-owner/data_owner or data-scientist/data_scientist; else an error naming the value.';

create or replace function fstore.session_serial() returns numeric
language sql stable set search_path = pg_catalog, pg_temp as $$
  -- only a TCP client has a connection to read: in a background worker (pg_cron's, running a
  -- monitor) sslinfo would dereference a missing one and crash the server
  select case when pg_catalog.inet_client_addr() is not null then public.ssl_client_serial() end
$$;
comment on function fstore.session_serial() is
  'The certificate serial of this session, as the server verified it (sslinfo reads the session''s own connection whoever is current_user: pg_stat_ssl would show a definer function the caller''s row only with pg_read_all_stats). NULL without a TCP connection: the operator''s socket, or a background worker such as a pg_cron job (which has no connection for sslinfo to read).';

create or replace function fstore.session_app_id() returns text
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select c.app_id from fstore.certificates c where c.serial = fstore.session_serial()
$$;
comment on function fstore.session_app_id() is
  'The application id recorded with this session''s certificate (NULL for user certificates).';

create or replace function fstore.session_project() returns text
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select m.project from fstore.members m where m.role_name = session_user::text
$$;
comment on function fstore.session_project() is
  'The project this session belongs to (NULL for the admin or anyone else).';

create or replace function fstore.session_is_admin() returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
  select session_user::text = 'fstore_admin'
$$;
comment on function fstore.session_is_admin() is
  'True when this session is the platform admin (session_user fstore_admin).';

create or replace function fstore.visible_projects() returns text[]
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select coalesce(array_agg(p), '{}') from (
    select m.project as p from fstore.members m where m.role_name = session_user::text
    union
    select s.project from fstore.shares s
      join fstore.members m on m.project = s.with_project
     where m.role_name = session_user::text
  ) visible
$$;
comment on function fstore.visible_projects() is
  'Projects whose metadata this session may read: its own and those shared with it.';

create or replace function fstore.session_sees_project(p_project text) returns boolean
language sql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
  select p_project = any(fstore.visible_projects())
$$;
comment on function fstore.session_sees_project(text) is
  'True when this session''s person may read project p''s data: p is their project or shared with it. Row policies of data copied out of p (training datasets built from a shared project) ask this, so the copies follow the share.';

create or replace function fstore.audit(p_project text, p_action text, p_details jsonb default '{}')
returns void language sql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
  insert into fstore.audit_log (session_role, project, action, details, client_serial, app_id)
  values (session_user::text, p_project, p_action, coalesce(p_details, '{}'),
          fstore.session_serial(), fstore.session_app_id())
$$;
comment on function fstore.audit(text,text,jsonb) is
  'Append one audit record; who and which certificate come from the session, never from arguments.';

create or replace function fstore.refuse_audit_change() returns trigger
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
  raise exception 'the audit log is append-only' using errcode = '42501';
end $$;
comment on function fstore.refuse_audit_change() is
  'Trigger function: the audit log is append-only (no UPDATE, DELETE or TRUNCATE).';

create or replace trigger audit_log_append_only before update or delete on fstore.audit_log
  for each row execute function fstore.refuse_audit_change();

create or replace trigger audit_log_no_truncate before truncate on fstore.audit_log
  for each statement execute function fstore.refuse_audit_change();

create or replace function fstore.require_admin(p_what text) returns void
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
  if session_user::text <> 'fstore_admin' then
    raise exception 'permission denied: only the platform admin may %', p_what using errcode = '42501';
  end if;
end $$;
comment on function fstore.require_admin(text) is
  'Raise permission denied unless this session is the platform admin; the text says what was refused.';

create or replace function fstore.require_data_owner(p_project text, p_what text) returns void
language plpgsql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
begin
  if not exists (select 1 from fstore.members m
                  where m.project = p_project and m.role_name = session_user::text
                    and m.project_role = 'data_owner') then
    raise exception 'permission denied: only a Data Owner of project % may %', p_project, p_what
      using errcode = '42501';
  end if;
end $$;
comment on function fstore.require_data_owner(text,text) is
  'Raise permission denied unless this session''s person is a Data Owner of the project; the text says what was refused.';

create or replace function fstore.require_project(p_project text) returns void
language plpgsql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
begin
  perform fstore.check_project_name(p_project);
  if not exists (select 1 from fstore.projects where name = p_project) then
    raise exception 'project % does not exist', p_project using errcode = 'P0002';
  end if;
end $$;
comment on function fstore.require_project(text) is
  'Raise an error unless the project name is valid and the project exists.';

create or replace function fstore.lock_project(p_project text) returns void
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
begin
  perform 1 from fstore.projects where name = p_project for no key update;
  if not found then
    raise exception 'project % does not exist', p_project using errcode = 'P0002';
  end if;
end $$;
comment on function fstore.lock_project(text) is
  'Serialise the control operations of one project (membership, shares, policies, training-dataset versions) until the transaction ends. A row lock on the catalog: unlike an advisory lock, nobody without UPDATE on fstore.projects can take it.';

create or replace function fstore.end_sessions(p_roles text[]) returns integer
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_count integer := 0;
  v_pid integer;
begin
  for v_pid in select pid from pg_catalog.pg_stat_activity
                where usename = any(p_roles) and pid <> pg_catalog.pg_backend_pid() loop
    perform pg_catalog.pg_terminate_backend(v_pid);
    v_count := v_count + 1;
  end loop;
  return v_count;
end $$;
comment on function fstore.end_sessions(text[]) is
  'Terminate every session logged in as one of these roles (pg_signal_backend).';

create or replace function fstore.retire_certificates(p_roles text[]) returns integer
language plpgsql volatile security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_count integer;
begin
  update fstore.certificates set revoked_at = clock_timestamp()
   where role_name = any(p_roles) and revoked_at is null and kind <> 'service';
  get diagnostics v_count = row_count;
  -- any role may LISTEN on a channel: the wake-up names nobody
  perform pg_catalog.pg_notify('fstore_certificates', '');
  return v_count;
end $$;
comment on function fstore.retire_certificates(text[]) is
  'A membership or project has ended: its certificates are revoked for good. The CRL keeper (the operator''s process holding the CA key) is told at once and signs them into the CRL; until it has, the role name cannot be given out again.';

create or replace function fstore.record_certificates(p_records jsonb) returns integer
language sql volatile set search_path = pg_catalog, fstore, pg_temp as $$
  with upserted as (
    insert into fstore.certificates as c (serial, role_name, kind, app_id, not_before, not_after, revoked_at,
                                          crl_published_at)
    select (r->>'serial')::numeric, r->>'role', r->>'kind', r->>'app_id', (r->>'not_before')::timestamptz,
           (r->>'not_after')::timestamptz, (r->>'revoked_at')::timestamptz, (r->>'crl_published_at')::timestamptz
      from jsonb_array_elements(p_records) r
    on conflict (serial) do update
      set revoked_at = coalesce(c.revoked_at, excluded.revoked_at),
          crl_published_at = coalesce(excluded.crl_published_at, c.crl_published_at)
    returning 1)
  select count(*)::integer from upserted
$$;
comment on function fstore.record_certificates(jsonb) is
  'The operator''s CA registry into the catalog (server start, issue, revocation, the CRL keeper): [{serial, role, kind, app_id, not_before, not_after, revoked_at, crl_published_at}]. A revocation, once recorded, stays. The superuser''s only.';

create or replace function fstore.require_retired_certificates(p_role text) returns void
language plpgsql stable security definer set search_path = pg_catalog, fstore, pg_temp as $$
declare
  v_pending integer;
begin
  select count(*) into v_pending from fstore.certificates
   where role_name = p_role and kind <> 'service' and not_after > now()
     and (revoked_at is null or crl_published_at is null);
  if v_pending > 0 then
    perform pg_catalog.pg_notify('fstore_certificates', '');
    raise exception 'earlier certificates of role % are not yet in the server''s CRL (% pending)', p_role, v_pending
      using errcode = '55000',
            hint = 'the CRL keeper publishes revocations within seconds; otherwise run `fstore cert crl`';
  end if;
end $$;
comment on function fstore.require_retired_certificates(text) is
  'A role name may be given (again) to a person only when none of its earlier certificates can still log in: each is expired, or revoked and in the published CRL.';

grant execute on function
  fstore.check_project_name(text),
  fstore.check_user_name(text),
  fstore.project_user_role(text,text),
  fstore.owner_role(text),
  fstore.project_role_kind(text),
  fstore.session_serial(),
  fstore.session_app_id(),
  fstore.session_project(),
  fstore.session_is_admin(),
  fstore.visible_projects(),
  fstore.session_sees_project(text),
  fstore.require_data_owner(text,text)
  to public;
reset role;
