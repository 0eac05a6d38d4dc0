#!/usr/bin/env bash
# Runs the whole measurement series of the issue "A hierarchical wheel and
# a leaner hot path", one harness after another (they must not overlap:
# each wants the machine to itself). About 90 minutes on 2 cores.
#
#   benchmarks/run_all.sh [OLD_DIR]
#
# OLD_DIR (default /tmp/tw-old) holds the previous code, commit b6bf812,
# with its own venv; it is prepared when missing (benchmarks/prepare_old.sh).
# Where the table asks for the previous figure, compare.py runs old and
# new alternately, run by run. Redis is Debian's 7.0 (/usr/bin/redis-server)
# with appendfsync always throughout (the harnesses' defaults).
# Output goes to benchmarks/results/*.log and *.json.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:-/tmp/tw-old}
out=benchmarks/results
mkdir -p "$out"
uv=${UV:-$(command -v uv || echo "$HOME/.local/bin/uv")}
if [ ! -x "$old/.venv/bin/timer-wheel" ]; then
    benchmarks/prepare_old.sh b6bf812 "$old"
fi
failed=()
run() {
    local name=$1
    shift
    echo "== $name: $*" | tee "$out/$name.log"
    if ! timeout 7200 "$@" 2>&1 | tee -a "$out/$name.log"; then
        failed+=("$name")
    fi
}
py="$uv run --frozen --group bench python"
cmp="$py benchmarks/compare.py"
bench="$py benchmarks"

# Old and new side by side.
run api_load $cmp --old "$old" --runs 5 -- api_load.py --duration 15
run fire_burst $cmp --old "$old" --runs 3 -- fire.py --burst 20000 --workers 2
run fire_rate $cmp --old "$old" --runs 3 -- \
    fire.py --rate 1000 --duration 30 --workers 2
run memory_1_7d $cmp --old "$old" --runs 3 -- \
    memory.py --start-days 1 --spread-days 6
run memory_30d $cmp --old "$old" --runs 3 -- \
    memory.py --start-days 1 --spread-days 29
run memory_fired $cmp --old "$old" --runs 3 -- \
    memory.py --fired --timers 20000

# New code only (no previous figure in the table).
run catchup $bench/catchup.py --timers 1000000 --runs 1
run fairness $bench/fairness.py --runs 3
run cluster $cmp --runs 3 --variant single= \
    --variant "cluster=--cluster-masters 3" -- \
    fire.py --burst 20000 --workers 2
run metrics $cmp --runs 5 --variant metrics=--wrapper \
    --variant "nometrics=--wrapper --no-metrics" -- api_load.py --duration 15
if .venv/bin/python -c "import granian" 2>/dev/null ||
    [ -d /tmp/tw-granian/granian ]; then
    run granian $cmp --runs 5 --variant uvicorn= \
        --variant "granian=--server granian" -- api_load.py --duration 15
else
    echo "== granian: skipped (install it: $uv pip install --python" \
        ".venv/bin/python --target /tmp/tw-granian --no-deps granian)"
fi
run fault_storm $bench/fault_storm.py --duration 60

# Components (this checkout).
run http_clients $bench/http_clients.py --runs 5
run redis_calls $bench/redis_calls.py --runs 5

if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
