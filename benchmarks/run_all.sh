#!/usr/bin/env bash
# Runs every benchmark of the results table, one after another (they must
# not overlap: each one wants the machine to itself). About 25 minutes on
# 2 cores. Output goes to benchmarks/results/*.log and *.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results
mkdir -p "$out"
run() {
    local name=$1
    shift
    echo "== $name: $*" | tee "$out/$name.log"
    timeout 1800 "$@" 2>&1 | tee -a "$out/$name.log"
}
bench="uv run --group bench python benchmarks"
run http_clients $bench/http_clients.py --runs 5
run redis_calls $bench/redis_calls.py --runs 5
run api_load $bench/api_load.py --runs 5
run memory $bench/memory.py --runs 3
run memory_1h $bench/memory.py --runs 1 --spread-days 0.041667
run memory_30d $bench/memory.py --runs 1 --spread-days 30
run fire_burst_2w $bench/fire.py --burst 20000 --workers 2 --runs 3
run fire_burst_1w $bench/fire.py --burst 20000 --workers 1 --runs 3
run fire_burst_store $bench/fire.py --burst 20000 --workers 2 \
    --create store --runs 3
run fire_rate $bench/fire.py --rate 1000 --duration 30 --workers 2 --runs 3
