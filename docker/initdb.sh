#!/usr/bin/env bash
# Runs once, on the first start of an empty volume: the same bootstrap as
# `fstore server start` (database, extensions, admin role, sql/ migrations with their
# SHA-256 in the ledger). The CRL keeper copies the CA registry into
# fstore.certificates when it connects.
set -euo pipefail
psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-psqlrc)
"${psql[@]}" -d postgres -c "create database fstore template template0"
"${psql[@]}" -d fstore <<'SQL'
create extension if not exists vector;
create extension if not exists pgaudit;
create extension if not exists sslinfo;
create role fstore_admin login nosuperuser nocreaterole nocreatedb noreplication;
revoke all on database fstore from public;
grant connect on database fstore to fstore_admin;
create table if not exists public.fstore_migrations (name text primary key, applied_at timestamptz not null default now(), sha256 text);
revoke all on public.fstore_migrations from public;
SQL
for f in /etc/fstore/sql/[0-9][0-9][0-9]_*.sql; do
  name=$(basename "$f")
  digest=$(sha256sum "$f" | cut -d' ' -f1)
  "${psql[@]}" -d fstore -1 -f "$f" -c "insert into public.fstore_migrations (name, sha256) values ('$name', '$digest')"
done
