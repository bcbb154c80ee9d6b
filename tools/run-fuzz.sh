#!/usr/bin/env bash
# Run the libFuzzer target for a bounded time (default 60 s; FUZZ_SECONDS overrides)
# over the checked-in corpus.  Fails on any crash, leak, timeout or invariant violation.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
ninja fuzz
work=$(mktemp -d /var/tmp/ringlog-fuzz-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus" "$work/artifacts"
# New inputs go to the scratch corpus; the checked-in one is read only.
set +e
build/fuzz/fuzz_log -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
	-artifact_prefix="$work/artifacts/" -print_final_stats=1 \
	"$work/corpus" tests/fuzz/corpus > "$work/log" 2>&1
status=$?
set -e
tail -n 25 "$work/log"
if [ "$status" -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
	echo "fuzz: failure (exit $status); reproducers:" >&2
	mkdir -p build/fuzz/artifacts && cp "$work"/artifacts/* build/fuzz/artifacts/ 2>/dev/null || true
	ls -l build/fuzz/artifacts >&2 || true
	exit 1
fi
echo "fuzz: ${seconds}s without a crash, leak or hang"
