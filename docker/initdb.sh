#!/usr/bin/env bash
# Runs once, on the first start of an empty volume: the database and its extensions, as
# `fstore server start` makes them. The keeper container then applies sql/ (roles, the
# catalog, every function) on each start, and copies the CA registry into
# fstore.certificates when it connects.
set -euo pipefail
psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-psqlrc)
"${psql[@]}" -d postgres -c "create database fstore template template0"
"${psql[@]}" -d fstore <<'SQL'
create extension if not exists vector;
create extension if not exists pgaudit;
create extension if not exists sslinfo;
create extension if not exists pg_cron;
revoke all on database fstore from public;
SQL
