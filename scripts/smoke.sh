#!/usr/bin/env bash
# Smoke test: start a broker in a temp dir (or use --addr), produce two
# messages, consume them back, and check the exact replies and log file.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: scripts/smoke.sh [--addr HOST:PORT]

Without --addr, starts \$BROKER (default target/release/broker, built if
missing) on 127.0.0.1:0 in a fresh temp dir, checks replies and the exact
bytes of kafka_log.txt, stops it with SIGTERM and checks it exited 0.
With --addr, checks a running broker (offsets relative to what it returns).
Prints 'smoke: OK' and exits 0, or says what differed and exits 1.
USAGE
}

addr=""
while [ $# -gt 0 ]; do
  case "$1" in
    --addr) addr="${2:?--addr needs HOST:PORT}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
need_nc

tmp=""
cleanup() {
  if [ -n "${BROKER_PID:-}" ]; then
    { kill -9 "$BROKER_PID"; wait "$BROKER_PID"; } 2>/dev/null || true
  fi
  [ -z "$tmp" ] || rm -rf "$tmp"
}
trap cleanup EXIT

own=false
if [ -z "$addr" ]; then
  tmp="$(mktemp -d)"
  start_broker "$tmp/data"
  addr="$BROKER_ADDR"
  own=true
fi

fail() { echo "smoke: FAILED: $*" >&2; exit 1; }
expect() { # expect WHAT GOT WANT
  [ "$2" = "$3" ] || fail "$1: expected '$3', got '$2'"
}

acks="$(printf 'PRODUCE hello\nPRODUCE world\n' | nc_send "$addr")"
first="$(head -n1 <<<"$acks")"
case "$first" in "ACK offset:"*) ;; *) fail "PRODUCE: got '$first'" ;; esac
base="${first#ACK offset:}"
expect "acks" "$acks" "$(printf 'ACK offset:%s\nACK offset:%s' "$base" "$((base + 1))")"
if $own; then
  expect "first offset" "$base" "0"
fi
replies="$(printf 'CONSUME %s\nCONSUME %s\nPING\n' "$base" "$((base + 1))" | nc_send "$addr")"
expect "consume" "$replies" "$(printf 'MESSAGE offset:%s hello\nMESSAGE offset:%s world\nPONG' "$base" "$((base + 1))")"

if $own; then
  expect "CONSUME 2" "$(printf 'CONSUME 2\n' | nc_send "$addr")" "NO_MESSAGE"
  log="$(od -An -c "$tmp/data/kafka_log.txt" | tr -s ' ')"
  want="$(printf 'offset:0 message:hello\noffset:1 message:world\n' | od -An -c | tr -s ' ')"
  expect "kafka_log.txt" "$log" "$want"
  status=0
  stop_broker || status=$?
  expect "broker exit status after SIGTERM" "$status" "0"
fi
echo "smoke: OK"
