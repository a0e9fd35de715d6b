# Sourced by examples/demo.sh and bench/build.sh: use the engine at DOCKER_HOST (or
# /var/run/docker.sock) when it answers, otherwise start a private dockerd with its own
# socket and data directory under /tmp, stopped (by process group) when the script exits.
# Sets and exports DOCKER_HOST.

engine_answers() { curl -sf --max-time 2 --unix-socket "${1#unix://}" http://localhost/_ping >/dev/null 2>&1; }

ensure_engine() {
    local name=$1
    DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}
    if [[ "$DOCKER_HOST" == unix://* ]] && engine_answers "$DOCKER_HOST"; then
        printf '%s: using the engine at %s\n' "$name" "$DOCKER_HOST" >&2
        export DOCKER_HOST
        return
    fi
    ENGINE_DIR=$(mktemp -d "/tmp/$name.XXXXXX")
    DOCKER_HOST="unix://$ENGINE_DIR/docker.sock"
    printf '%s: starting a private dockerd at %s\n' "$name" "$DOCKER_HOST" >&2
    setsid dockerd --data-root "$ENGINE_DIR/data" --exec-root "$ENGINE_DIR/exec" --pidfile "$ENGINE_DIR/docker.pid" \
        -H "$DOCKER_HOST" --bridge=none --iptables=false --ip-masq=false --containerd-namespace "$name" \
        --containerd-plugins-namespace "$name-plugins" >"$ENGINE_DIR/dockerd.log" 2>&1 </dev/null &
    ENGINE_PID=$!
    trap stop_engine EXIT
    for _ in $(seq 1 150); do engine_answers "$DOCKER_HOST" && break; sleep 0.2; done
    if ! engine_answers "$DOCKER_HOST"; then
        tail -n 20 "$ENGINE_DIR/dockerd.log" >&2
        printf '%s: dockerd did not start\n' "$name" >&2
        exit 1
    fi
    export DOCKER_HOST
}

stop_engine() {
    set +e
    kill -TERM -- "-$ENGINE_PID" 2>/dev/null
    wait "$ENGINE_PID" 2>/dev/null
    grep -o " $ENGINE_DIR[^ ]*" /proc/mounts | sort -r | while read -r mount; do umount -l "$mount"; done
    rm -rf "$ENGINE_DIR"
}
