#!/usr/bin/env bash
# Run every test program in DIR/tests with a per-test timeout.
# Exit status 77 means skipped.  Prints "N passed, N failed, N skipped" at the end.
set -u
dir=${1:-build}
timeout_s=${RINGLOG_TEST_TIMEOUT:-300}
pass=0 fail=0 skip=0 failed=()
for t in "$dir"/tests/test_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	start=$(date +%s%N)
	timeout --kill-after=10 "$timeout_s" "$t" > "$t.log" 2>&1
	rc=$?
	ms=$((($(date +%s%N) - start) / 1000000))
	secs=$((ms / 1000)).$((ms % 1000 / 100))
	case $rc in
	0) pass=$((pass + 1)); echo "PASS $name (${secs}s)" ;;
	77) skip=$((skip + 1)); echo "SKIP $name: $(tail -n 1 "$t.log")" ;;
	124|137) fail=$((fail + 1)); failed+=("$name"); echo "FAIL $name: timed out after ${timeout_s}s" ;;
	*) fail=$((fail + 1)); failed+=("$name"); echo "FAIL $name (exit $rc), log:"; sed 's/^/    /' "$t.log" | tail -n 40 ;;
	esac
done
echo
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
