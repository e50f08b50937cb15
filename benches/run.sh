#!/usr/bin/env bash
# Runs every benchmark suite in one go and writes BENCHMARKS.md.
#
#   benches/run.sh          # the default suites (about 25 minutes)
#   benches/run.sh full     # also 60 s sustained runs and the 1M-session
#                           # scale, sweep and memory runs (about 45 minutes)
#
# Redis joins as a contender when redis-server is installed or installable
# (apt-get); the script starts it on a free port on 127.0.0.1 and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-default}
results=target/bench-results
rm -rf "$results" target/criterion
mkdir -p "$results"
export SESSIONDB_BENCH_OUT=$PWD/$results/results.jsonl

redis_pid=
cleanup() { [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true; }
trap cleanup EXIT
if ! command -v redis-server >/dev/null && command -v apt-get >/dev/null; then
    (apt-get install -y -qq redis-server >/dev/null 2>&1 ||
        (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq redis-server >/dev/null 2>&1)) || true
fi
if command -v redis-server >/dev/null; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # Default persistence off: the contender is Redis as a cache, as the
    # seed's pycket uses it (appendonly would add an fsync policy).
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no >"$results/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    export SESSIONDB_BENCH_REDIS=redis://127.0.0.1:$port/
else
    echo "redis-server not available: the redis contender is skipped" >&2
fi

if [ "$mode" = full ]; then
    export SESSIONDB_BENCH_SCALE=full
    sustained_secs=60
else
    sustained_secs=20
fi

# --features redis adds sessiondb's own Redis backend as a contender.
cargo bench -p sessiondb-bench --features redis --bench workloads
cargo bench -p sessiondb-bench --features redis --bench mixed
cargo bench -p sessiondb-bench --features redis --bench strict_commits
SESSIONDB_BENCH_SECS=$sustained_secs cargo bench -p sessiondb-bench --features redis --bench sustained_writes
cargo bench -p sessiondb-bench --features redis --bench scale

python3 benches/report.py "benches/run.sh $mode" > BENCHMARKS.md
echo "wrote BENCHMARKS.md"
