#!/bin/bash
# clang-format (dry run, --Werror) over every tracked C file, then clang-tidy (.clang-tidy) over
# every project C file in compile_commands.json. Prints each tool's finding count; exits 1 if any.
# Usage: tools/lint.sh [-f] [files...]   (-f: clang-format only; env LINT_BUILD_DIR, default
# build-lint, configured here with gcc so the flags match the real build)
set -uo pipefail
cd "$(dirname "$0")/.."
format_only=
if [ "${1:-}" = "-f" ]; then format_only=1; shift; fi
dir=${LINT_BUILD_DIR:-build-lint}
if [ $# -gt 0 ]; then
	files=("$@")
else
	mapfile -t files < <(git ls-files '*.c' '*.h')
fi

fmt=0
for f in "${files[@]}"; do
	n=$(clang-format --dry-run "$f" 2>&1 | grep -c 'warning:')
	if [ "$n" -gt 0 ]; then
		echo "clang-format: $f: $n"
		fmt=$((fmt + n))
	fi
done
echo "clang-format: $fmt findings"
[ -n "$format_only" ] && { [ $fmt -eq 0 ]; exit; }

if [ ! -f "$dir/compile_commands.json" ]; then
	meson setup "$dir" >/dev/null || exit 1
fi
# config.h is generated at configure time; nothing else is generated, so no build is needed.
mapfile -t cfiles < <(printf '%s\n' "${files[@]}" | grep '\.c$' | grep -v '^tests/fuzz/')
log=$dir/clang-tidy.log
# gcc-only flags in compile_commands.json are dropped for clang-tidy.
run-clang-tidy -quiet -p "$dir" -j "$(nproc)" \
	-extra-arg=-Wno-unknown-warning-option -extra-arg=-Wno-unused-command-line-argument \
	"${cfiles[@]/#/$PWD/}" >"$log" 2>&1
pat='^[^ ]+:[0-9]+:[0-9]+: (warning|error): '
sed -e 's/\x1b\[[0-9;]*m//g' "$log" | grep -E "$pat" | sed -e "s|^$PWD/||" -e "s|^$dir/\.\./||" -e 's|^\.\./||' | sort -u >"$log.findings"
cat "$log.findings"
tidy=$(wc -l <"$log.findings")
echo "clang-tidy: $tidy findings (full output: $log)"
[ $fmt -eq 0 ] && [ "$tidy" -eq 0 ]
