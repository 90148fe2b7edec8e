#!/usr/bin/env bash
# Regenerates the Go fixtures in this directory from src/.
# Run from anywhere: bash testdata/go/regen.sh
# Needs Go (Debian 12: `apt-get install -y golang-go`, go1.19.8 linux/amd64)
# and gcc for the cgo program. Each fixture is the program's stderr only;
# stdout (one "starting ..." line) is discarded. All exit with status 2.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
export PATH="$PATH:/usr/lib/go/bin"
export GOCACHE="${GOCACHE:-$(mktemp -d)}" GOPATH="${GOPATH:-$(mktemp -d)}" GOFLAGS=-mod=mod
bin="$(mktemp -d)"
(cd "$here/src/crashy" && go build -o "$bin/crashy" .)
(cd "$here/src/cgocrash" && CGO_ENABLED=1 go build -o "$bin/cgocrash" .)
run() { "$bin/crashy" "$1" 2>"$here/$2.txt" >/dev/null; }
run panic panic
run nilmap nil_map
run nilptr nil_pointer
run deadlock deadlock
run concurrent concurrent_map_writes
run index index_out_of_range_goroutine
run repanic repanic_recovered
run sigabrt sigabrt
run multiline multiline_panic
"$bin/cgocrash" 2>"$here/cgo_sigsegv.txt" >/dev/null
rm -rf "$bin"
exit 0
