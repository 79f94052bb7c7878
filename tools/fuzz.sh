#!/bin/bash
# Build every fuzz target with clang + libFuzzer + ASan/UBSan (-Dfuzz=true) and run each for a
# bounded time over a scratch copy of its committed corpus. A crash leaves its input in
# build-fuzz/crashes/<target>/ and fails the run; copy it into tests/<module>/corpus-<name>/ with
# the fix so fuzz-regress replays it from then on.
# Usage: tools/fuzz.sh [-t seconds per target (default 60)] [target-name ...]
set -uo pipefail
cd "$(dirname "$0")/.."
secs=60
if [ "${1:-}" = "-t" ]; then secs=$2; shift 2; fi
dir=${FUZZ_BUILD_DIR:-build-fuzz}

if [ ! -f "$dir/build.ninja" ]; then
	CC=clang meson setup "$dir" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
		-Dbuildtype=debugoptimized \
		-Dc_args="-fsanitize=fuzzer-no-link -fno-sanitize-recover=all" >/dev/null || exit 1
fi
ninja -C "$dir" || exit 1

# Each fuzz target and its corpus, from the fuzz-regress registrations.
mapfile -t targets < <(meson introspect "$dir" --tests | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if any(s.split(":")[-1] == "fuzz-regress" for s in t["suite"]):
        print(t["name"], t["cmd"][0], t["cmd"][1] if len(t["cmd"]) > 1 else "")
')

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0 ran=0
for line in "${targets[@]}"; do
	read -r name exe corpus <<<"$line"
	if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then
		continue
	fi
	# (not piped into grep -q: with pipefail, its early exit would SIGPIPE the target)
	if [[ "$("$exe" -help=1 2>&1)" != *-max_total_time* ]]; then
		echo "tools/fuzz.sh: $name is not linked with libFuzzer (add fuzz_link to its dependencies)"
		failed=$((failed + 1))
		continue
	fi
	work=$dir/fuzz-work/$name crashes=$dir/crashes/$name
	rm -rf "$work"
	mkdir -p "$work" "$crashes"
	[ -n "$corpus" ] && [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
	ran=$((ran + 1))
	echo "== $name (${secs}s)"
	if ! "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
		-artifact_prefix="$crashes/" -print_final_stats=1 "$work" >"$dir/fuzz-$name.log" 2>&1; then
		echo "FAIL $name: see $dir/fuzz-$name.log and $crashes/"
		grep -m3 -E 'ERROR|runtime error|SUMMARY' "$dir/fuzz-$name.log"
		failed=$((failed + 1))
	else
		grep -E 'stat::number_of_executed_units|cov:' "$dir/fuzz-$name.log" | tail -2
	fi
done
echo "fuzz: $ran ran, $failed failed"
[ $failed -eq 0 ]
