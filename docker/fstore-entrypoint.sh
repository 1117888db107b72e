#!/usr/bin/env bash
# The database container sees no CA key: only the server's TLS files (/fstore-tls) and
# what the CRL keeper exports (/fstore-pki: ca-bundle.crt and crl.pem, re-written at
# every revocation and renewal, then the keeper reloads the server over the socket).
# PostgreSQL insists that its TLS key is owned by the server user with mode 0600;
# the files `fstore init` wrote on the host are the operator's, so copy them in first.
set -euo pipefail
for _ in $(seq 1 120); do
  [[ -s /fstore-pki/crl.pem && -s /fstore-pki/ca-bundle.crt ]] && break
  echo "waiting for the CRL keeper to export /fstore-pki/crl.pem ..." >&2
  sleep 1
done
if [[ ! -s /fstore-pki/crl.pem ]]; then
  echo "no CRL in /fstore-pki after 120 s: is the crl-keeper service running (docker compose logs crl-keeper)?" >&2
  exit 1
fi
install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/tls
install -o postgres -g postgres -m 0600 /fstore-tls/server.key /var/lib/postgresql/tls/server.key
install -o postgres -g postgres -m 0644 /fstore-tls/server.crt /var/lib/postgresql/tls/server.crt
exec docker-entrypoint.sh postgres \
  -c ssl=on \
  -c ssl_cert_file=/var/lib/postgresql/tls/server.crt \
  -c ssl_key_file=/var/lib/postgresql/tls/server.key \
  -c ssl_ca_file=/fstore-pki/ca-bundle.crt \
  -c ssl_crl_file=/fstore-pki/crl.pem \
  -c ssl_min_protocol_version=TLSv1.2 \
  -c hba_file=/etc/fstore/pg_hba.conf \
  -c shared_preload_libraries=pgaudit,pg_cron \
  -c cron.database_name=fstore \
  -c cron.use_background_workers=on \
  -c cron.max_running_jobs=8 \
  -c max_worker_processes=24 \
  -c pgaudit.log='ddl, role' \
  -c pgaudit.role=fstore_auditor \
  -c log_connections=on \
  -c timezone=UTC \
  "$@"
