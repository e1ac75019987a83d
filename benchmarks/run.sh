#!/usr/bin/env bash
# Side-by-side benchmark: makes a virtualenv of its own (default /tmp/benchvenv, or
# $BENCH_VENV), installs agentstores and the third-party stores of benchmarks/requirements.txt
# into it, times each reference alone with its raw-engine bars (`agentstores bench BACKEND
# --baselines $BENCH_ARGS`), times `agentstores check sqlite --profile ci` (the kit's own bar),
# then runs benchmarks/compare.py, which writes
# benchmarks/RESULTS.md. The project's own environment is never touched. Arguments go to
# compare.py (e.g. --scale 0.1); BENCH_ARGS to the bench runs (e.g. BENCH_ARGS="--scale 0.1").
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${BENCH_VENV:-/tmp/benchvenv}"
python="${PYTHON:-python3}"
bash scripts/install-redis
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e . -r benchmarks/requirements.txt
reports="$(mktemp -d)"
trap 'rm -rf "$reports"' EXIT
bench_json=()
for backend in json sqlite redis; do
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
  "$venv/bin/agentstores" bench "$backend" --baselines ${BENCH_ARGS:-} \
    --json "$reports/$backend.json" || [ $? -eq 1 ]  # 1: a flag, reported in the table
  bench_json+=(--bench-json "$reports/$backend.json")
done
# The kit's own bar: every family's suite against the SQLite reference, ci profile, timed
# whole (the process start included); compare.py records it next to the other bars.
started=$(date +%s.%N)
check_status=0
CI=true "$venv/bin/agentstores" check sqlite --profile ci > "$reports/check.txt" 2>&1 || check_status=$?
finished=$(date +%s.%N)
check_seconds=$(awk -v a="$started" -v b="$finished" 'BEGIN { printf "%.1f", b - a }')
check_summary=$(grep -E '^tests: ' "$reports/check.txt" | tail -1 | sed 's/^tests: //' || true)
"$venv/bin/python" benchmarks/compare.py "${bench_json[@]}" --kit-check-seconds "$check_seconds" \
  --kit-check-status "$check_status" --kit-check-summary "${check_summary:-no summary}" "$@"
