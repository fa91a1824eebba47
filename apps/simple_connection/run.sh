#!/usr/bin/env bash
# The original app-net example "simple_connection", ported: peer1 serves the app; peer2 runs the
# entry `peer2`, which finds peer1 on this host and calls connected_function("My Message!")
# there, so the message is printed by peer1. Used by `make run`.
set -euo pipefail
netrun=${NETRUN:-target/release/netrun}
app=${APP:-target/apps/simple_connection.wasm}
log=$(mktemp)
"$netrun" "$app" >"$log" 2>&1 &
peer1=$!
trap 'kill "$peer1" 2>/dev/null || true; wait "$peer1" 2>/dev/null || true; rm -f "$log"' EXIT

for _ in $(seq 100); do
    grep -q "listening on" "$log" && break
    kill -0 "$peer1" 2>/dev/null || { cat "$log"; echo "peer1 did not start" >&2; exit 1; }
    sleep 0.1
done
echo "peer1: $(grep -m1 'listening on' "$log")"
echo "peer2: running entry peer2"
"$netrun" run "$app" --entry peer2
for _ in $(seq 50); do
    grep -q "My Message!" "$log" && break
    sleep 0.1
done
echo "--- peer1's output:"
cat "$log"
grep -q "My Message!" "$log" || { echo "peer1 never printed the message" >&2; exit 1; }
