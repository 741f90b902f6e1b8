#!/usr/bin/env bash
# Fairness benchmark: PING and PRODUCE latency of a light client while many
# others keep the broker busy, for two broker binaries side by side (say,
# before and after a change). See docs/BENCHMARKS.md, "Fairness".
set -euo pipefail
PROG=bench-fairness
# shellcheck source=scripts/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: scripts/bench-fairness.sh --before BROKER --after BROKER
         [--runs N] [--seconds S] [--scenarios "KIND:CONNS ..."]
         [--results FILE]

For each of N runs (default 2), each scenario (default: subscribers:100
fetchers:100 parked:2000 parked:8000 producers:50 stalled:100) and each of
the two brokers (the order alternates from run to run), starts the broker
on 127.0.0.1 in a fresh data directory (--max-connections 10000), runs

  bench latency --load KIND --load-conns CONNS --seconds S (default 10)

and stops it. Each row records the load average and CPU pressure before
the run, the broker's CPU and the CPU used by everything else on the
machine during it (in % of one core). Raw rows go to --results (TSV,
default: printed at the end), then a table of medians per broker and
scenario. bench is target/release/bench of this repository (built if
missing), or \$BENCH.
USAGE
}

RUNS=2 DURATION=10 RESULTS="" BEFORE="" AFTER=""
SCENARIOS="subscribers:100 fetchers:100 parked:2000 parked:8000 producers:50 stalled:100"
while (($#)); do
  case $1 in
    --before) BEFORE=${2:?}; shift 2 ;;
    --after) AFTER=${2:?}; shift 2 ;;
    --runs) RUNS=${2:?}; shift 2 ;;
    --seconds) DURATION=${2:?}; shift 2 ;;
    --scenarios) SCENARIOS=${2:?}; shift 2 ;;
    --results) RESULTS=${2:?}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
[[ -n $BEFORE && -n $AFTER ]] || usage_error "give --before BROKER and --after BROKER"
for b in "$BEFORE" "$AFTER"; do
  [[ -f $b && -x $b ]] || die "$b is not an executable file"
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || usage_error "--runs wants a whole number, got '$RUNS'"
for s in $SCENARIOS; do
  [[ $s =~ ^(subscribers|fetchers|parked|producers|stalled):[1-9][0-9]*$ ]] ||
    usage_error "a scenario is KIND:CONNS, got '$s'"
done

BENCH=${BENCH:-}
if [[ -z $BENCH ]]; then
  (cd -- "$REPO_ROOT" && cargo build --release --bin bench >&2) || die "cargo build --bin bench failed"
  BENCH=$REPO_ROOT/target/release/bench
fi
command -v /usr/bin/time >/dev/null 2>&1 || die "/usr/bin/time (package time) is needed"
make_workdir
install_traps

field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# Busy jiffies of the whole machine (user nice system irq softirq steal).
busy() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
proc_cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
now() { date +%s.%N; }
HZ=$(getconf CLK_TCK)

rows=$WORK/results.tsv
printf 'run\tbroker\tload\tconns\tload1\tpsi_some_avg10\tbroker_cpu_pct\tother_cpu_pct\tping_p50_ms\tping_p90_ms\tping_p99_ms\tping_max_ms\tproduce_p50_ms\tproduce_p90_ms\tproduce_p99_ms\tproduce_max_ms\tload_produce_p99_ms\tload_msg_per_s\tclient_lag_p99_ms\tbroker_rss_kib\n' >"$rows"

for run in $(seq 1 "$RUNS"); do
  if ((run % 2)); then order="before after"; else order="after before"; fi
  for scenario in $SCENARIOS; do
    kind=${scenario%%:*} conns=${scenario##*:}
    for label in $order; do
      if [[ $label == before ]]; then BROKER=$BEFORE; else BROKER=$AFTER; fi
      say "run $run/$RUNS $kind x $conns, $label"
      rm -rf -- "$WORK/data"
      start_broker --max-connections 10000
      read -r load1 _ </proc/loadavg
      psi=$(awk '$1 == "some" { sub("avg10=", "", $2); print $2 }' /proc/pressure/cpu 2>/dev/null || echo -)
      t0=$(now) m0=$(busy) b0=$(proc_cpu "$BROKER_PID")
      if ! /usr/bin/time -f '%U %S' -o "$WORK/time" "$BENCH" latency --addr "127.0.0.1:$BROKER_PORT" \
        --load "$kind" --load-conns "$conns" --seconds "$DURATION" >"$WORK/out" 2>"$WORK/err"; then
        cat "$WORK/err" >&2
        show_broker_log
        die "bench latency failed ($kind x $conns, $label)"
      fi
      t1=$(now) m1=$(busy) b1=$(proc_cpu "$BROKER_PID")
      stop_broker
      read -r bu bs <"$WORK/time"
      # CPU in % of one core over the bench's run (its setup included).
      cpu=$(awk -v b0="$b0" -v b1="$b1" -v m0="$m0" -v m1="$m1" -v t0="$t0" -v t1="$t1" \
        -v bu="$bu" -v bs="$bs" -v hz="$HZ" 'BEGIN {
          wall = t1 - t0; broker = (b1 - b0) / hz; all = (m1 - m0) / hz
          other = all - broker - bu - bs; if (other < 0) other = 0
          printf "%.0f %.0f", 100 * broker / wall, 100 * other / wall }')
      read -r broker_cpu other_cpu <<<"$cpu"
      ping=$(grep ' probe=ping ' "$WORK/out")
      produce=$(grep ' probe=produce ' "$WORK/out")
      loadp=$(grep ' probe=load-produce ' "$WORK/out" || true)
      summary=$(grep ' load_msg_per_s=' "$WORK/out")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$run" "$label" "$kind" "$conns" "$load1" "$psi" "$broker_cpu" "$other_cpu" \
        "$(field "$ping" p50_ms)" "$(field "$ping" p90_ms)" "$(field "$ping" p99_ms)" "$(field "$ping" max_ms)" \
        "$(field "$produce" p50_ms)" "$(field "$produce" p90_ms)" "$(field "$produce" p99_ms)" "$(field "$produce" max_ms)" \
        "$(if [[ -n $loadp ]]; then field "$loadp" p99_ms; else echo -; fi)" \
        "$(field "$summary" load_msg_per_s)" "$(field "$summary" client_lag_p99_ms)" \
        "$(field "$summary" broker_rss_kib)" >>"$rows"
      tail -n 1 "$rows" >&2
    done
  done
done

if [[ -n $RESULTS ]]; then
  cp -- "$rows" "$RESULTS"
else
  printf '\nRaw results\n'
  cat "$rows"
fi

# col NAME: the column number of NAME in the header.
col() { head -n 1 "$rows" | tr '\t' '\n' | awk -v k="$1" '$1 == k { print NR }'; }
med() {
  awk -F'\t' -v b="$1" -v k="$2" -v c="$3" -v n="$4" 'NR > 1 && $2 == b && $3 == k && $4 == c { print $n }' "$rows" |
    grep -v '^-$' | median
}
printf '\nMedians of %s runs, %s s each (ms; CPU in %% of one core)\n' "$RUNS" "$DURATION"
printf '%-17s %-6s %9s %9s %9s %9s %9s %9s %10s %6s %6s %6s\n' load broker \
  ping_p50 ping_p99 ping_max prod_p50 prod_p99 lag_p99 load_msg/s broker other load1
for scenario in $SCENARIOS; do
  kind=${scenario%%:*} conns=${scenario##*:}
  for label in before after; do
    printf '%-17s %-6s' "$kind x $conns" "$label"
    for name in ping_p50_ms ping_p99_ms ping_max_ms produce_p50_ms produce_p99_ms client_lag_p99_ms; do
      printf ' %9s' "$(med "$label" "$kind" "$conns" "$(col "$name")")"
    done
    printf ' %10.0f' "$(med "$label" "$kind" "$conns" "$(col load_msg_per_s)")"
    for name in broker_cpu_pct other_cpu_pct load1; do
      printf ' %6s' "$(med "$label" "$kind" "$conns" "$(col "$name")")"
    done
    printf '\n'
  done
done
