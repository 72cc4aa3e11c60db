#!/usr/bin/env bash
# Runs the same MQTT workload against Shoal, rumqttd, mosquitto and the floor broker, one
# after another, each server pinned to one core and the load generator to another, and
# prints a side-by-side table with Shoal/peer ratios.
#
#   perf/compare.sh                         canonical + inflight16 (+ half load), TLS
#   perf/compare.sh --plain                 the same over plain TCP
#   perf/compare.sh --scenario inflight16   one scenario (repeatable)
#   perf/compare.sh --servers "rumqttd mosquitto floor" --duration 5s
#   perf/compare.sh --wait-quiet 600        before each run, wait up to 600 s for other
#                                           processes to use < 0.1 cores (shared machines)
#   perf/compare.sh --scenario soak-100k --no-half-load --extra "--devices 19000"
#                                           flags passed to every shoal-perf run
#
# Environment: SERVER_CPU (default 0), LOAD_CPU (default 1), CARGO_TARGET_DIR, SHOAL_BIN,
# OUT (results directory, default perf/results/<UTC time>).
#
# Every server gets the same TLS certificate: Shoal's development certificate (ECDSA
# P-256) when Shoal starts, otherwise one made here with openssl. Peers acknowledge from
# memory; Shoal acknowledges after its configured durability (the `ack` setting).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SCENARIOS=()
SERVERS="shoal rumqttd mosquitto floor"
TLS=1
DURATION=""
HALF_LOAD=1
INSTALL=1
WAIT_QUIET=0
EXTRA=()
OUT=${OUT:-$ROOT/perf/results/$(date -u +%Y%m%dT%H%M%SZ)}

usage() {
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --scenario) SCENARIOS+=("$2"); shift 2 ;;
        --servers) SERVERS="$2"; shift 2 ;;
        --plain) TLS=0; shift ;;
        --duration) DURATION="$2"; shift 2 ;;
        --no-half-load) HALF_LOAD=0; shift ;;
        --no-install) INSTALL=0; shift ;;
        --wait-quiet) WAIT_QUIET="$2"; shift 2 ;;
        --extra) read -r -a EXTRA <<<"$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(canonical inflight16)

log() { printf '== %s\n' "$*" >&2; }

if [[ $(nproc --all) -lt 2 ]]; then
    log "warning: fewer than 2 CPUs; server and load will share a core"
    LOAD_CPU=$SERVER_CPU
fi

# --- build and install --------------------------------------------------------------------
log "building shoal-perf and shoal (release, into $TARGET_DIR)"
(cd "$ROOT" && cargo build --release -j 2 -p perf --bin shoal-perf)
PERF=$TARGET_DIR/release/shoal-perf
SHOAL=${SHOAL_BIN:-$TARGET_DIR/release/shoal}
if [[ -z ${SHOAL_BIN:-} ]] && ! (cd "$ROOT" && cargo build --release -j 2 --bin shoal); then
    log "warning: shoal did not build; its column will say so"
fi

if [[ $INSTALL == 1 ]]; then
    if [[ " $SERVERS " == *" mosquitto "* ]] && ! command -v mosquitto >/dev/null; then
        log "installing mosquitto"
        apt-get install -y mosquitto >/dev/null || (apt-get update >/dev/null && apt-get install -y mosquitto >/dev/null)
    fi
    if [[ " $SERVERS " == *" rumqttd "* ]] && ! command -v rumqttd >/dev/null; then
        log "installing rumqttd"
        # The locked dependency set of rumqttd 0.20.0 (metrics 0.22.1) does not build on
        # current Rust; fall back to a fresh resolution and say so.
        cargo install rumqttd --locked -j 2 || {
            log "cargo install rumqttd --locked failed; retrying without --locked"
            cargo install rumqttd -j 2
        }
    fi
fi
export PATH=$HOME/.cargo/bin:$PATH

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
mkdir -p "$OUT"
WORK=$(mktemp -d -t shoal-compare-XXXXXX)
SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    for p in $(seq "$1" $(($1 + 200))); do
        if port_free "$p"; then echo "$p"; return; fi
    done
    echo "no free port near $1" >&2; return 1
}
wait_port() {
    local i
    for i in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}

# --- certificates -------------------------------------------------------------------------
SHOAL_DATA=$WORK/shoal-data
MQTT_PORT=$(free_port 28883)
HTTPS_PORT=$(free_port 28443)
AMQP_PORT=$(free_port 25671)
SHOAL_OK=0
SHOAL_WHY="not started"
start_shoal() {
    mkdir -p "$SHOAL_DATA"
    taskset -c "$SERVER_CPU" "$SHOAL" serve --data-dir "$SHOAL_DATA" --https-port "$HTTPS_PORT" \
        --mqtt-port "$MQTT_PORT" --amqp-port "$AMQP_PORT" >"$WORK/shoal.log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 600); do
        [[ -f $SHOAL_DATA/endpoints.json ]] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    SHOAL_WHY="shoal did not start: $(tail -n 3 "$WORK/shoal.log" | tr '\n' ' ')"
    stop_server
    return 1
}
TLS_DIR=$WORK/tls
mkdir -p "$TLS_DIR"
if [[ -x $SHOAL ]] && start_shoal; then
    cp "$SHOAL_DATA/tls/server.pem" "$SHOAL_DATA/tls/server.key" "$SHOAL_DATA/tls/ca.pem" "$TLS_DIR/"
    stop_server
    SHOAL_OK=1
    log "using Shoal's development certificate for every server"
else
    [[ -x $SHOAL ]] || SHOAL_WHY="no shoal binary at $SHOAL"
    log "making an ECDSA P-256 certificate with openssl ($SHOAL_WHY)"
    (
        cd "$TLS_DIR"
        openssl ecparam -name prime256v1 -genkey -noout -out ca.key
        openssl req -x509 -new -key ca.key -subj "/CN=shoal-perf CA" -days 30 -out ca.pem
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key
        openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
            -extfile ext.cnf -out leaf.pem
        cat leaf.pem ca.pem >server.pem
    ) >/dev/null 2>&1
fi
CA=$TLS_DIR/ca.pem

# --- servers ------------------------------------------------------------------------------
# start_NAME PORT: starts the server pinned to SERVER_CPU, sets SERVER_PID.
start_rumqttd() {
    local conf=$WORK/rumqttd.toml
    cat >"$conf" <<EOF
id = 0
[router]
id = 0
max_connections = 200000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:$1"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 262144
    max_inflight_count = 1000
    dynamic_filters = true
EOF
    if [[ $TLS == 1 ]]; then
        cat >>"$conf" <<EOF
    [v4.1.tls]
    certpath = "$TLS_DIR/server.pem"
    keypath = "$TLS_DIR/server.key"
EOF
    fi
    taskset -c "$SERVER_CPU" rumqttd -q -c "$conf" >"$WORK/rumqttd.log" 2>&1 &
    SERVER_PID=$!
}
start_mosquitto() {
    local conf=$WORK/mosquitto.conf
    {
        echo "listener $1 127.0.0.1"
        echo "allow_anonymous true"
        echo "persistence false"
        echo "log_type error"
        echo "max_connections -1"
        # Started as root, mosquitto switches to user "mosquitto", which cannot read the
        # private key in our temporary directory; stay the user we are.
        [[ $(id -u) == 0 ]] && echo "user root"
        if [[ $TLS == 1 ]]; then
            echo "certfile $TLS_DIR/server.pem"
            echo "keyfile $TLS_DIR/server.key"
        fi
    } >"$conf"
    taskset -c "$SERVER_CPU" mosquitto -c "$conf" >"$WORK/mosquitto.log" 2>&1 &
    SERVER_PID=$!
}
start_floor() {
    local tls=()
    [[ $TLS == 1 ]] && tls=(--tls --cert "$TLS_DIR/server.pem" --key "$TLS_DIR/server.key")
    taskset -c "$SERVER_CPU" "$PERF" floor-broker --bind 127.0.0.1 --port "$1" "${tls[@]}" \
        >"$WORK/floor.log" 2>&1 &
    SERVER_PID=$!
}

# run_one SCENARIO SERVER [extra shoal-perf args...]: prints the report path or !reason.
run_one() {
    local scenario=$1 server=$2
    shift 2
    local base=$OUT/$scenario-$server
    local target=()
    case $server in
        shoal)
            if [[ $SHOAL_OK != 1 ]]; then echo "!$SHOAL_WHY"; return; fi
            start_shoal || { echo "!$SHOAL_WHY"; return; }
            SERVER_PID=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$SHOAL_DATA/endpoints.json")
            target=(--data-dir "$SHOAL_DATA" --register upsert)
            ;;
        *)
            local port
            port=$(free_port 29883)
            case $server in
                rumqttd) command -v rumqttd >/dev/null || { echo "!rumqttd is not installed"; return; }
                    start_rumqttd "$port" ;;
                mosquitto) command -v mosquitto >/dev/null || { echo "!mosquitto is not installed"; return; }
                    start_mosquitto "$port" ;;
                floor) start_floor "$port" ;;
                *) echo "!unknown server $server"; return ;;
            esac
            if ! wait_port "$port"; then
                local why
                why=$(tail -n 2 "$WORK/$server.log" 2>/dev/null | tr '\n' ' ')
                stop_server
                echo "!$server did not listen on $port: $why"
                return
            fi
            target=(--target mqtt --host 127.0.0.1 --port "$port" --server-pid "$SERVER_PID")
            [[ $TLS == 1 ]] && target+=(--tls --ca "$CA" --server-name localhost)
            ;;
    esac
    [[ $TLS == 1 ]] || target+=(--no-tls)
    local duration=()
    [[ -n $DURATION ]] && duration=(--duration "$DURATION")
    if [[ $WAIT_QUIET != 0 ]]; then
        # Measured with the server idle; a busy server would never look quiet.
        "$PERF" wait-quiet --max-cores 0.1 --timeout "${WAIT_QUIET}s" >&2 || log "still busy; running anyway"
    fi
    log "$scenario: $server (server on CPU $SERVER_CPU, load on CPU $LOAD_CPU)"
    if taskset -c "$LOAD_CPU" "$PERF" run -s "$scenario" "${target[@]}" "${duration[@]}" "${EXTRA[@]}" "$@" \
        --label "$server" --name "$scenario" -q --json "$base.json" --svg "$base.svg" >"$base.txt" 2>&1; then
        echo "$base.json"
    else
        echo "!$(grep -m1 '^error' "$base.txt" | cut -c1-200)"
    fi
    stop_server
    # The server's own account (Shoal: per-partition flushes, segment rolls, preparations
    # that had to run inline) goes next to the report.
    [[ -f $WORK/$server.log ]] && cp "$WORK/$server.log" "$base.server.log"
}

rate_of() { sed -n 's/.*"msgs_per_s": *\([0-9.e+]*\).*/\1/p' "$1" | head -n 1; }

TABLES=$OUT/tables.txt
: >"$TABLES"
MODE=$([[ $TLS == 1 ]] && echo TLS || echo "plain TCP")
declare -A BEST=() ONE=()
for scenario in "${SCENARIOS[@]}"; do
    rows=()
    for server in $SERVERS; do
        result=$(run_one "$scenario" "$server")
        rows+=("$server=$result")
        if [[ $result == !* ]]; then
            log "$server: FAILED ${result#!}"
            continue
        fi
        rate=$(rate_of "$result")
        [[ $scenario == canonical ]] && ONE[$server]=$rate
        if [[ -z ${BEST[$server]:-} ]] || awk -v a="$rate" -v b="${BEST[$server]}" 'BEGIN { exit !(a > b) }'; then
            BEST[$server]=$rate
        fi
    done
    "$PERF" compare-table --title "== $scenario ($MODE)" --baseline shoal "${rows[@]}" | tee -a "$TABLES"
    echo | tee -a "$TABLES"
done
if [[ $HALF_LOAD == 1 ]]; then
    # PUBACK latency at half the sustained load (target: p99 under 5 ms), open loop,
    # corrected for coordinated omission. The sustained load is each server's one-in-flight
    # rate (canonical: how device SDKs send, one message at a time, unbatched like open-loop
    # traffic), or its best rate when canonical did not run. Half of a 16-in-flight rate
    # would overload most servers: open-loop messages arrive spread out, not in batches.
    rows=()
    for server in $SERVERS; do
        base=${ONE[$server]:-${BEST[$server]:-}}
        if [[ -z $base ]]; then
            rows+=("$server=!no sustained rate to halve")
            continue
        fi
        half=$(awk -v r="$base" 'BEGIN { printf "%d", r / 2 }')
        rows+=("$server=$(run_one half-load "$server" --rate "$half")")
    done
    "$PERF" compare-table --title "== half load ($MODE): open loop at half of each server's sustained rate; PUBACK p99 target < 5 ms" \
        --baseline shoal "${rows[@]}" | tee -a "$TABLES"
    echo | tee -a "$TABLES"
fi
log "reports, tables and SVGs in $OUT"
