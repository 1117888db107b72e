#!/usr/bin/env bash
# Installs everything fstore needs on a Debian machine, as root. Idempotent:
# a second run only checks and returns within seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_apt=()
for pkg in postgresql-$PG_MAJOR postgresql-contrib postgresql-server-dev-$PG_MAJOR \
           postgresql-$PG_MAJOR-pgaudit postgresql-client-$PG_MAJOR libpq-dev build-essential python3-dev \
           postgresql-$PG_MAJOR-cron \
           chromium fonts-dejavu-core; do  # chromium: the drift report's test renders it headless
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  log "installing apt packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's postgresql-common may create and start a default cluster; fstore runs its own.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q "^$PG_MAJOR main"; then
  pg_ctlcluster $PG_MAJOR main stop >/dev/null 2>&1 || true
fi

if [ ! -f "$(${PG_CONFIG} --pkglibdir)/vector.so" ]; then
  log "building pgvector from Debian's source package"
  work=$(mktemp -d)
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  echo "deb-src [trusted=yes] $mirror trixie main" > "$work/sources.list"
  mkdir -p "$work/lists/partial"
  opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update -qq
  (cd "$work" && apt-get "${opts[@]}" source --download-only pgvector >/dev/null)
  tar -C "$work" -xf "$(ls "$work"/pgvector_*.orig.tar.* | head -1)"
  src=$(find "$work" -maxdepth 1 -type d -name 'pgvector-*' | head -1)
  make -s -C "$src" PG_CONFIG="$PG_CONFIG" OPTFLAGS="" >/dev/null
  make -s -C "$src" PG_CONFIG="$PG_CONFIG" install >/dev/null
  rm -rf "$work"
fi

# fstore_asof (ext/fstore_asof): the point-in-time join's one-pass ASOF merge, a PGXS
# extension; rebuilt when its C, SQL or control file is newer than the installed library.
asof_so="$(${PG_CONFIG} --pkglibdir)/fstore_asof.so"
if [ ! -f "$asof_so" ] || [ -n "$(find ext/fstore_asof -newer "$asof_so" -type f \( -name '*.c' -o -name '*.sql' -o -name '*.control' -o -name Makefile \))" ]; then
  log "building the fstore_asof extension"
  make -s -C ext/fstore_asof PG_CONFIG="$PG_CONFIG" clean >/dev/null
  make -s -C ext/fstore_asof PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s -C ext/fstore_asof PG_CONFIG="$PG_CONFIG" install >/dev/null
fi

# Citus (distributed PostgreSQL) for the cluster mode and its tests. Citus is not
# packaged by Debian and is not downloadable here: it is built once from the vendored
# source (../shared/vendor, see its README), with its one patch for PostgreSQL 15.20's
# headers. About 4.5 minutes on 2 cores; skipped when citus.so is already installed.
# Users install Citus from its own packages or images instead (README, docs/cluster.md).
CITUS_VERSION=13.2.2
CITUS_VENDOR=${FSTORE_VENDOR_DIR:-$ROOT/../shared/vendor}
[ -d "$CITUS_VENDOR" ] || CITUS_VENDOR=/work/shared/vendor
if [ ! -f "$(${PG_CONFIG} --pkglibdir)/citus.so" ] && [ "${FSTORE_SKIP_CITUS:-0}" != 1 ]; then
  if [ -f "$CITUS_VENDOR/citus-$CITUS_VERSION.tar.gz" ]; then
    need_citus=()
    for pkg in liblz4-dev libzstd-dev libcurl4-openssl-dev libkrb5-dev; do
      dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_citus+=("$pkg")
    done
    if ((${#need_citus[@]})); then
      log "installing Citus build dependencies: ${need_citus[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${need_citus[@]}" >/dev/null
    fi
    log "building Citus $CITUS_VERSION from $CITUS_VENDOR (about 4.5 minutes)"
    work=$(mktemp -d)
    src="$work/citus-$CITUS_VERSION"  # the tarball has no top directory
    mkdir -p "$src"
    tar -C "$src" -xzf "$CITUS_VENDOR/citus-$CITUS_VERSION.tar.gz"
    for patch_file in "$CITUS_VENDOR"/citus-"$CITUS_VERSION"-*.patch; do
      [ -f "$patch_file" ] && patch -s -d "$src" -p1 < "$patch_file"
    done
    if ! (cd "$src" && ./configure -q PG_CONFIG="$PG_CONFIG" && make -s -j"$(nproc)" && make -s install) \
         > "$work/build.log" 2>&1; then
      tail -50 "$work/build.log"; exit 1
    fi
    rm -rf "$work"
  else
    log "no Citus source in $CITUS_VENDOR: the cluster mode and its tests are unavailable"
  fi
fi

if [ ! -x "$ROOT/.venv/bin/python" ]; then
  log "creating .venv"
  python3 -m venv "$ROOT/.venv"
fi
stamp="$ROOT/.venv/.fstore-installed"
# setup.py builds the C TFRecord encoder (fstore/_tfrecord_native.c): a change to it reinstalls too
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] \
   || [ fstore/_tfrecord_native.c -nt "$stamp" ] || ! ls fstore/_tfrecord_native.*.so >/dev/null 2>&1; then
  # the extras the demo (tf: its Keras model) and the tests (tf, torch: tf.data and PyTorch over exports) need
  log "installing Python packages (fstore with extras ${FSTORE_EXTRAS:=dev,tf,torch})"
  if ! { "$ROOT/.venv/bin/pip" install -q --upgrade pip && "$ROOT/.venv/bin/pip" install -q -e ".[$FSTORE_EXTRAS]"; } \
       > "$ROOT/.venv/pip-install.log" 2>&1; then
    cat "$ROOT/.venv/pip-install.log"; exit 1
  fi
  touch "$stamp"
fi
citus_note=""; [ -f "$(${PG_CONFIG} --pkglibdir)/citus.so" ] && citus_note=", Citus $CITUS_VERSION"
log "ready: PostgreSQL $($PG_BIN/postgres --version | awk '{print $3}'), pgvector, pgaudit$citus_note, .venv"
