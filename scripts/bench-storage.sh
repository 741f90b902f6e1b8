#!/usr/bin/env bash
# Storage benchmark: produce throughput and latency per --fsync policy, and
# restart time and memory against the amount of data stored. See
# docs/BENCHMARKS.md.
set -euo pipefail
PROG=bench-storage
# shellcheck source=scripts/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: scripts/bench-storage.sh [--runs N] [--sizes "1 4 10"] [--skip-policies] [--skip-restart]

1. For --fsync always, interval and never, N runs (default 3) interleaved
   of S1 (1 connection), S2 (50 connections) and S3 (4 x 256 in flight),
   100-byte messages; prints median msg/s and p99.
2. For each size in GiB (default 1 4 10): fills a data dir with that much
   log (1 KiB messages, 64 MiB segments), restarts the broker on it and
   prints the time until it listens, its RSS then, and its RSS after a
   client read 100,000 old messages. Needs free disk for the largest size.
USAGE
}

RUNS=3 SIZES="1 4 10" POLICIES=1 RESTART=1
while (($#)); do
  case $1 in
    --runs) RUNS=${2:?}; shift 2 ;;
    --sizes) SIZES=${2:?}; shift 2 ;;
    --skip-policies) POLICIES=0; shift ;;
    --skip-restart) RESTART=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done

(cd -- "$REPO_ROOT" && cargo build --release --bin broker --bin bench >&2) || die "build failed"
BROKER=${BROKER:-$REPO_ROOT/target/release/broker}
BENCH=$REPO_ROOT/target/release/bench
make_workdir
install_traps

field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

if ((POLICIES)); then
  results=$WORK/policies.tsv
  : >"$results"
  for run in $(seq 1 "$RUNS"); do
    for policy in always interval never; do
      say "run $run/$RUNS --fsync $policy"
      rm -rf -- "$WORK/data"
      start_broker --fsync "$policy"
      addr=127.0.0.1:$BROKER_PORT
      for spec in "S1 --conns 1 --depth 1 --messages 30000" \
        "S2 --conns 50 --depth 1 --messages 300000" \
        "S3 --conns 4 --depth 256 --messages 2000000"; do
        read -r scenario args <<<"$spec"
        # shellcheck disable=SC2086 # $args is a list of flags
        line=$("$BENCH" produce --addr "$addr" $args 2>/dev/null) || die "bench failed"
        printf '%s\t%s\t%s\t%s\n' "$policy" "$scenario" "$(field "$line" msg_per_s)" "$(field "$line" p99_us)" >>"$results"
      done
      stop_broker
    done
  done
  printf '\nProduce, --fsync policies (median of %s runs)\n' "$RUNS"
  printf '%-9s %-3s %12s %10s\n' policy sc msg/s p99_us
  for policy in always interval never; do
    for scenario in S1 S2 S3; do
      rate=$(awk -F'\t' -v p="$policy" -v s="$scenario" '$1 == p && $2 == s { print $3 }' "$results" | median)
      p99=$(awk -F'\t' -v p="$policy" -v s="$scenario" '$1 == p && $2 == s { print $4 }' "$results" | median)
      printf '%-9s %-3s %12.0f %10.0f\n' "$policy" "$scenario" "$rate" "$p99"
    done
  done
fi

if ((RESTART)); then
  printf '\nRestart against stored data (1 KiB messages, 64 MiB segments)\n'
  printf '%8s %10s %12s %14s %16s\n' GiB segments listen_ms rss_kib rss_after_read
  rm -rf -- "$WORK/data"
  stored=0
  for gib in $SIZES; do
    # Top the data dir up to the next size (sizes in KiB, 1 KiB messages).
    want=$((gib * 1024 * 1024))
    need=$((want - stored))
    if ((need > 0)); then
      start_broker --fsync never
      "$BENCH" produce --addr "127.0.0.1:$BROKER_PORT" --conns 4 --depth 64 --size 1024 \
        --messages "$need" >/dev/null 2>&1 || die "filling the data dir failed"
      stored=$want
      stop_broker
    fi
    segments=$(find "$WORK/data" -maxdepth 1 -name 'kafka_log.txt*' | wc -l)
    start=$(date +%s%N)
    start_broker --fsync never
    listen_ms=$((($(date +%s%N) - start) / 1000000))
    rss=$(rss_kib "$BROKER_PID")
    # A client reads old data: a rolled segment gets opened and indexed.
    "$BENCH" consume --addr "127.0.0.1:$BROKER_PORT" --messages 100000 --batch 1000 >/dev/null 2>&1 ||
      die "reading old data failed"
    rss_read=$(rss_kib "$BROKER_PID")
    stop_broker
    printf '%8s %10s %12s %14s %16s\n' "$gib" "$segments" "$listen_ms" "$rss" "$rss_read"
  done
fi
