#!/usr/bin/env bash
# Regenerates the sanitizer fixtures in this directory from src/*.c.
# Run from anywhere: bash testdata/sanitizers/regen.sh
# Needs gcc with libasan, libubsan and libtsan (Debian 12: gcc 12.2).
set -u
here="$(cd "$(dirname "$0")" && pwd)"
build="$(mktemp -d)"
cd "$here/src"
gcc -g -O0 -fsanitize=address heap_use_after_free.c -o "$build/heap_use_after_free"
gcc -g -O0 -fsanitize=address stack_buffer_overflow.c -o "$build/stack_buffer_overflow"
gcc -g -O0 -fsanitize=address leak.c -o "$build/leak"
gcc -g -O0 -fsanitize=address null_deref.c -o "$build/null_deref"
gcc -g -O0 -fsanitize=undefined signed_overflow.c -o "$build/signed_overflow"
gcc -g -O0 -fsanitize=thread data_race.c -o "$build/data_race" -lpthread
# Each program's stderr is the fixture; stdout is discarded. Exit codes are
# expected to be non-zero (1 for ASan/LSan, 66 for TSan, 0 for UBSan which
# reports and carries on unless halt_on_error is set).
"$build/heap_use_after_free" 2>"$here/heap_use_after_free.txt" >/dev/null
"$build/stack_buffer_overflow" 2>"$here/stack_buffer_overflow.txt" >/dev/null
"$build/leak" 2>"$here/leak.txt" >/dev/null
"$build/null_deref" 2>"$here/null_deref.txt" >/dev/null
UBSAN_OPTIONS=print_stacktrace=1 "$build/signed_overflow" 2>"$here/signed_overflow.txt" >/dev/null
"$build/signed_overflow" 2>"$here/signed_overflow_nostack.txt" >/dev/null
"$build/data_race" 2>"$here/data_race.txt" >/dev/null
rm -rf "$build"
exit 0
