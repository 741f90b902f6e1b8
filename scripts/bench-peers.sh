#!/usr/bin/env bash
# Side-by-side benchmark of the broker, Redis and beanstalkd: the same
# client (target/release/bench), payload and machine, persistence on,
# runs interleaved, medians and ratios printed. See docs/BENCHMARKS.md.
set -euo pipefail
PROG=bench-peers
# shellcheck source=scripts/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: scripts/bench-peers.sh [--runs N] [--scale F] [--results FILE] [--chart FILE.svg] [--report-only]

Installs redis-server and beanstalkd (apt) if missing, builds the release
binaries, then for each durability group:
  everysec: broker --fsync interval | redis appendfsync everysec | beanstalkd -b DIR
  always:   broker --fsync always   | redis appendfsync always   | beanstalkd -b DIR -f 0
runs, on loopback, with 100-byte messages, N times (default 3), interleaved:
  S1 latency     1 connection, 1 in flight, 30000 messages
  S2 concurrency 50 connections, 1 in flight each, 300000 messages
  S3 pipelined   4 connections, 256 in flight each, 2000000 messages
  S4 consume     drain 1000000 stored messages (one connection)
and measures footprint: RSS idle, after S3, with 1000 idle connections.
Prints medians and broker/peer ratios; writes every raw result to FILE
(default bench-results.tsv) and, with gnuplot, an SVG chart.

--scale F multiplies every message count (e.g. 0.01 for a quick smoke).
--report-only prints the tables (and chart) from an existing FILE.
beanstalkd -f 0 syncs on every command (~6k msg/s here), so its S2-S4 run
at 1/20 of the counts; rates stay comparable.
USAGE
}

RUNS=3 SCALE=1 RESULTS=bench-results.tsv CHART="" REPORT_ONLY=0
while (($#)); do
  case $1 in
    --runs) RUNS=${2:?}; shift 2 ;;
    --scale) SCALE=${2:?}; shift 2 ;;
    --results) RESULTS=${2:?}; shift 2 ;;
    --chart) CHART=${2:?}; shift 2 ;;
    --report-only) REPORT_ONLY=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || usage_error "--runs takes a positive number"

n() { awk -v n="$1" -v s="$SCALE" -v d="${2:-1}" 'BEGIN { v = int(n * s / d); print (v < 1 ? 1 : v) }'; }

install_peers() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v beanstalkd >/dev/null 2>&1 || missing+=(beanstalkd)
  ((${#missing[@]})) || return 0
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  say "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts the packaged services; we run our own on other ports.
  $sudo systemctl stop redis-server beanstalkd >/dev/null 2>&1 || true
}

make_workdir
if ((REPORT_ONLY)); then
  [[ -f $RESULTS ]] || die "no results file $RESULTS"
  RUNS=$(awk -F'\t' 'NR > 1 && $3 > n { n = $3 } END { print n + 0 }' "$RESULTS")
else
install_peers
(cd -- "$REPO_ROOT" && cargo build --release --bin broker --bin bench >&2) || die "build failed"
BROKER=${BROKER:-$REPO_ROOT/target/release/broker}
BENCH=$REPO_ROOT/target/release/bench
ulimit -n 4096 2>/dev/null || true

PEER_PID=""
stop_peer() {
  if [[ -n $PEER_PID ]]; then
    kill -TERM "$PEER_PID" 2>/dev/null || true
    wait "$PEER_PID" 2>/dev/null || true
    PEER_PID=""
  fi
}
cleanup_all() {
  stop_peer
  cleanup
}
trap cleanup_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

REDIS_PORT=6399 BEANSTALK_PORT=11399

# wait_port ADDR TARGET: until the server answers (at most 10 s).
wait_port() {
  local i
  for ((i = 0; i < 100; i++)); do
    "$BENCH" idle --target "$2" --addr "$1" --conns 1 --seconds 0 >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$2 did not start on $1"
}

# start TARGET GROUP: a fresh server in a fresh dir; sets ADDR and PID.
start() {
  local dir=$WORK/$1-$2
  rm -rf -- "$dir" "$WORK/data"
  mkdir -p -- "$dir"
  case $1 in
    broker)
      local policy=interval
      [[ $2 == always ]] && policy=always
      start_broker --fsync "$policy"
      ADDR=127.0.0.1:$BROKER_PORT PID=$BROKER_PID
      ;;
    redis)
      local fsync=everysec
      [[ $2 == always ]] && fsync=always
      redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
        --appendfsync "$fsync" --save "" --daemonize no --logfile "$dir/log" &
      PEER_PID=$! PID=$!
      ADDR=127.0.0.1:$REDIS_PORT
      wait_port "$ADDR" redis
      ;;
    beanstalkd)
      local args=(-b "$dir")
      [[ $2 == always ]] && args+=(-f 0)
      beanstalkd -l 127.0.0.1 -p "$BEANSTALK_PORT" "${args[@]}" &
      PEER_PID=$! PID=$!
      ADDR=127.0.0.1:$BEANSTALK_PORT
      wait_port "$ADDR" beanstalkd
      ;;
  esac
}

stop() {
  if [[ $1 == broker ]]; then stop_broker; else stop_peer; fi
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# record GROUP TARGET RUN SCENARIO KEY VALUE
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

# bench_line GROUP TARGET RUN SCENARIO ARGS...: runs bench, records rates.
bench_line() {
  local group=$1 target=$2 run=$3 scenario=$4 line
  shift 4
  line=$("$BENCH" "$@" --target "$target" --addr "$ADDR" 2>/dev/null) ||
    die "bench failed: $target $group $scenario ($*)"
  local key
  for key in msg_per_s p50_us p99_us p999_us; do
    record "$group" "$target" "$run" "$scenario" "$key" \
      "$(tr ' ' '\n' <<<"$line" | awk -F= -v k="$key" '$1 == k { print $2 }')"
  done
}

printf 'group\ttarget\trun\tscenario\tkey\tvalue\n' >"$RESULTS"
say "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -r)"
for run in $(seq 1 "$RUNS"); do
  for group in everysec always; do
    # Rotate who goes first, so no target always runs on a warmer machine.
    targets=(broker redis beanstalkd)
    shift_by=$(((run - 1) % 3))
    targets=("${targets[@]:shift_by}" "${targets[@]:0:shift_by}")
    for target in "${targets[@]}"; do
      div=1
      [[ $target == beanstalkd && $group == always ]] && div=20
      say "run $run/$RUNS $group $target"
      start "$target" "$group"
      record "$group" "$target" "$run" footprint rss_idle_kib "$(rss_kib "$PID")"
      bench_line "$group" "$target" "$run" S1 produce --conns 1 --depth 1 --messages "$(n 30000)"
      bench_line "$group" "$target" "$run" S2 produce --conns 50 --depth 1 --messages "$(n 300000 "$div")"
      bench_line "$group" "$target" "$run" S3 produce --conns 4 --depth 256 --messages "$(n 2000000 "$div")"
      record "$group" "$target" "$run" footprint rss_after_s3_kib "$(rss_kib "$PID")"
      from=()
      [[ $target == broker ]] && from=(--from "$(n 30000)")
      bench_line "$group" "$target" "$run" S4 consume --conns 1 --depth 4 --batch 1000 \
        --messages "$(n 1000000 "$div")" "${from[@]}"
      # 1000 idle connections, held while we read the server's RSS.
      fifo=$WORK/idle.fifo
      rm -f -- "$fifo"
      mkfifo "$fifo"
      "$BENCH" idle --target "$target" --addr "$ADDR" --conns 1000 --seconds 3 >"$fifo" &
      idle_pid=$!
      if IFS= read -r -t 20 ready <"$fifo" && [[ $ready == *ready ]]; then
        record "$group" "$target" "$run" footprint rss_1000_idle_kib "$(rss_kib "$PID")"
      else
        say "idle connections did not come up for $target"
      fi
      wait "$idle_pid" || true
      stop "$target"
    done
  done
done
record all broker 1 footprint binary_bytes "$(stat -c %s "$BROKER")"
fi

# Medians and ratios.
awk -F'\t' '
  NR == 1 { next }
  { k = $1 SUBSEP $2 SUBSEP $4 SUBSEP $5; vals[k] = vals[k] " " $6; keys[k] = 1 }
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    for (k in keys) med[k] = median(vals[k])
    split("everysec always", groups, " ")
    split("S1 S2 S3 S4", scen, " ")
    split("broker redis beanstalkd", tgts, " ")
    printf "\nMedians of %s runs (msg/s; latency in microseconds)\n", "'"$RUNS"'"
    printf "%-9s %-3s %-10s %12s %9s %9s %16s %16s\n", "group", "sc", "target", "msg/s", "p50_us", "p99_us", "broker/this msg/s", "this/broker p99"
    for (g = 1; g <= 2; g++) for (s = 1; s <= 4; s++) for (t = 1; t <= 3; t++) {
      base = groups[g] SUBSEP "broker" SUBSEP scen[s]
      k = groups[g] SUBSEP tgts[t] SUBSEP scen[s]
      if (!((k SUBSEP "msg_per_s") in med)) continue
      r = med[k SUBSEP "msg_per_s"]
      ratio = (r > 0) ? med[base SUBSEP "msg_per_s"] / r : 0
      lat = (med[base SUBSEP "p99_us"] > 0) ? med[k SUBSEP "p99_us"] / med[base SUBSEP "p99_us"] : 0
      printf "%-9s %-3s %-10s %12.0f %9.0f %9.0f %16.2f %16.2f\n", groups[g], scen[s], tgts[t], r, med[k SUBSEP "p50_us"], med[k SUBSEP "p99_us"], ratio, lat
    }
    printf "\nFootprint (median KiB)\n"
    for (g = 1; g <= 2; g++) for (t = 1; t <= 3; t++) {
      k = groups[g] SUBSEP tgts[t] SUBSEP "footprint"
      printf "%-9s %-10s idle %6d  after S3 %7d  1000 idle connections %7d\n", groups[g], tgts[t], med[k SUBSEP "rss_idle_kib"], med[k SUBSEP "rss_after_s3_kib"], med[k SUBSEP "rss_1000_idle_kib"]
    }
    printf "broker binary (stripped): %d bytes\n", med["all" SUBSEP "broker" SUBSEP "footprint" SUBSEP "binary_bytes"]
  }
' "$RESULTS"

if [[ -n $CHART ]]; then
  if ! command -v gnuplot >/dev/null 2>&1; then
    say "gnuplot not installed; no chart (apt-get install gnuplot-nox)"
  else
    awk -F'\t' 'NR > 1 && $5 == "msg_per_s" { k = $1 " " $4 SUBSEP $2; v[k] = v[k] " " $6; c[$1 " " $4] = 1 }
      function median(list,   a, n, i, j, t) { n = split(list, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }; return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
      END { split("everysec always", g, " "); split("S1 S2 S3 S4", s, " ")
        for (i = 1; i <= 2; i++) for (j = 1; j <= 4; j++) { x = g[i] " " s[j]; printf "\"%s\\n%s\" %s %s %s\n", s[j], g[i], median(v[x SUBSEP "broker"]), median(v[x SUBSEP "redis"]), median(v[x SUBSEP "beanstalkd"]) } }' \
      "$RESULTS" >"$WORK/chart.dat"
    gnuplot <<GNUPLOT
set terminal svg size 900,480 dynamic font "sans,12"
set output "$CHART"
set title "Messages per second, 100-byte messages (median of $RUNS runs, higher is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y
set format y "%.0s%c"
set ylabel "msg/s (log scale)"
set key top left
set xtics nomirror scale 0
set bmargin 4
plot "$WORK/chart.dat" using 2:xtic(1) title "kafka-like-broker" lc rgb "#1f77b4", \
     "" using 3 title "Redis 7 (AOF)" lc rgb "#d62728", \
     "" using 4 title "beanstalkd (binlog)" lc rgb "#2ca02c"
GNUPLOT
    say "chart written to $CHART"
  fi
fi
