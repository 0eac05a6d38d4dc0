#!/usr/bin/env bash
# Checks out an older commit of this repository into a folder of its own,
# with its own venv, for the harnesses' --code / compare.py --old:
#
#   benchmarks/prepare_old.sh b6bf812 /tmp/tw-old
#
# Uses only `git archive` (no change to this checkout) and records the
# commit in DIR/.commit-id, which the results' JSON then names.
set -euo pipefail
commit=${1:?usage: prepare_old.sh COMMIT DIR}
dir=${2:?usage: prepare_old.sh COMMIT DIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
uv=${UV:-$(command -v uv || echo "$HOME/.local/bin/uv")}
mkdir -p "$dir"
git -C "$repo" archive "$commit" | tar -x -C "$dir"
git -C "$repo" rev-parse --short "$commit" >"$dir/.commit-id"
cd "$dir"
"$uv" sync --locked --group bench
echo "ready: $dir (commit $(cat "$dir/.commit-id"))"
