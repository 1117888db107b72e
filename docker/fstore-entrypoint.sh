#!/usr/bin/env bash
# PostgreSQL insists that its TLS key is owned by the server user with mode 0600;
# the files `fstore init` wrote on the host are root's, so copy them in first.
set -euo pipefail
install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/tls
install -o postgres -g postgres -m 0600 /fstore-home/server/tls/server.key /var/lib/postgresql/tls/server.key
install -o postgres -g postgres -m 0644 /fstore-home/server/tls/server.crt /var/lib/postgresql/tls/server.crt
exec docker-entrypoint.sh postgres \
  -c ssl=on \
  -c ssl_cert_file=/var/lib/postgresql/tls/server.crt \
  -c ssl_key_file=/var/lib/postgresql/tls/server.key \
  -c ssl_ca_file=/fstore-home/ca/ca-bundle.crt \
  -c ssl_crl_file=/fstore-home/ca/crl.pem \
  -c ssl_min_protocol_version=TLSv1.2 \
  -c hba_file=/etc/fstore/pg_hba.conf \
  -c shared_preload_libraries=pgaudit \
  -c pgaudit.log='ddl, role' \
  -c pgaudit.role=fstore_auditor \
  -c log_connections=on \
  -c timezone=UTC \
  "$@"
