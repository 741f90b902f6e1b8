#!/usr/bin/env bash
# Load test: N messages over C parallel nc connections; prints msg/s.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: scripts/load.sh [-n MESSAGES] [-c CONNECTIONS] [-s SIZE] [--addr HOST:PORT]

Sends MESSAGES (default 100000) PRODUCE requests of SIZE bytes (default 100)
split over CONNECTIONS (default 4) parallel 'nc -N' connections, checks that
every reply is an ACK, and prints messages per second. Without --addr it
starts its own broker in a temp dir (\$BROKER, default target/release/broker)
and also checks that the log holds exactly offsets 0..N-1.
USAGE
}

n=100000 c=4 size=100 addr=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n="${2:?}"; shift 2 ;;
    -c) c="${2:?}"; shift 2 ;;
    -s) size="${2:?}"; shift 2 ;;
    --addr) addr="${2:?}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ "$n" =~ ^[1-9][0-9]*$ && "$c" =~ ^[1-9][0-9]*$ && "$size" =~ ^[1-9][0-9]*$ ]] \
  || die "-n, -c and -s take positive numbers"
[ "$c" -le "$n" ] || c="$n"
need_nc

tmp="$(mktemp -d)"
cleanup() {
  if [ -n "${BROKER_PID:-}" ]; then
    { kill -9 "$BROKER_PID"; wait "$BROKER_PID"; } 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

own=false
if [ -z "$addr" ]; then
  start_broker "$tmp/data"
  addr="$BROKER_ADDR"
  own=true
fi

# Generate the request files before the clock starts.
payload="$(head -c "$size" /dev/zero | tr '\0' 'x')"
per=$((n / c)) extra=$((n % c))
for i in $(seq 1 "$c"); do
  count=$((per + (i <= extra ? 1 : 0)))
  awk -v n="$count" -v line="PRODUCE $payload" 'BEGIN { for (i = 0; i < n; i++) print line }' >"$tmp/in.$i"
done

start="$(date +%s.%N)"
pids=()
for i in $(seq 1 "$c"); do
  nc_send "$addr" <"$tmp/in.$i" >"$tmp/out.$i" &
  pids+=($!)
done
for pid in "${pids[@]}"; do
  wait "$pid" || die "an nc connection failed (exit $?)"
done
end="$(date +%s.%N)"

acks="$(cat "$tmp"/out.* | grep -c '^ACK offset:' || true)"
others="$(cat "$tmp"/out.* | grep -vc '^ACK offset:' || true)"
[ "$others" -eq 0 ] || die "$others replies were not ACKs, e.g.: $(cat "$tmp"/out.* | grep -v '^ACK offset:' | head -n 3)"
[ "$acks" -eq "$n" ] || die "got $acks ACKs for $n messages"
if $own; then
  stop_broker || die "broker exited with an error"
  # Offsets in the log are exactly 0..n-1, in order.
  awk -v n="$n" '
    { want = "offset:" (NR - 1) " message:"; if (substr($0, 1, length(want)) != want) { print "line " NR " out of sequence"; bad = 1; exit 1 } }
    END { if (!bad && NR != n) { print "log has " NR " lines, expected " n; exit 1 } }
  ' "$tmp/data/kafka_log.txt" || die "log check failed"
  # And the ACKs name each offset once.
  dupes="$(cat "$tmp"/out.* | sort | uniq -d | head -n 1)"
  [ -z "$dupes" ] || die "offset acknowledged twice: $dupes"
fi
awk -v n="$n" -v c="$c" -v s="$start" -v e="$end" -v size="$size" 'BEGIN {
  t = e - s; if (t <= 0) t = 0.000001
  printf "load: %d messages over %d connections in %.2f s: %.0f msg/s, %.1f MB/s\n", n, c, t, n / t, n * (size + 9) / t / 1e6
}'
