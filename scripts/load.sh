#!/usr/bin/env bash
# Load test: N messages over C parallel nc connections; checks every reply
# is an ACK and the offsets are unique and contiguous. See -h.
set -euo pipefail

PROG=load # used by lib.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<EOF
Usage: scripts/load.sh [-n MESSAGES] [-c CONNECTIONS] [-s SIZE] [-t SECONDS]
                       [--addr HOST:PORT]

Sends MESSAGES "PRODUCE <payload>" requests, SIZE-byte payloads, split over
CONNECTIONS parallel "nc -N" connections, and prints one line:

  load: N messages over C connections in T s: R msg/s, B MiB/s

(MiB/s counts payload bytes.) Exits 1 if any reply is not an ACK, the ACK
count differs from MESSAGES, or an offset was given twice. Without --addr
it starts its own broker on 127.0.0.1:0 in a temp dir and also checks that
kafka_log.txt ends up with exactly MESSAGES lines, offsets 0 to
MESSAGES-1, holding the payloads sent.

Options:
  -n, --messages N      messages to send [default: 100000]
  -c, --connections N   parallel connections [default: 4]
  -s, --size N          payload bytes per message [default: 100]
  -t, --timeout N       seconds each connection may take [default: 300]
  --addr HOST:PORT      use a running broker; offsets that are not
                        contiguous (other producers) are then only a warning
  -h, --help            print this help

Environment:
  BROKER                broker binary [default: target/release/broker in
                        the repository, built with cargo if missing]

Needs bash, coreutils, awk and nc (netcat-openbsd).
EOF
}

MESSAGES=100000
CONNECTIONS=4
SIZE=100
TIMEOUT=300
ADDR=""

# number OPTION VALUE: a positive decimal integer, else a usage error.
number() {
  [[ $2 =~ ^[1-9][0-9]{0,8}$ ]] || usage_error "$1 wants a number from 1 to 999999999, got '$2'"
  printf '%s' "$2"
}

while (($# > 0)); do
  case $1 in
  -h | --help)
    usage
    exit 0
    ;;
  -n | --messages | -c | --connections | -s | --size | -t | --timeout | --addr)
    (($# >= 2)) || usage_error "$1 needs a value"
    case $1 in
    -n | --messages) MESSAGES=$(number "$1" "$2") ;;
    -c | --connections) CONNECTIONS=$(number "$1" "$2") ;;
    -s | --size) SIZE=$(number "$1" "$2") ;;
    -t | --timeout) TIMEOUT=$(number "$1" "$2") ;;
    --addr) ADDR=$2 ;;
    esac
    shift 2
    ;;
  *) usage_error "unexpected argument '$1'" ;;
  esac
done
((CONNECTIONS <= MESSAGES)) || usage_error "-c ($CONNECTIONS) must not exceed -n ($MESSAGES)"

check_nc
make_workdir
install_traps

if [[ -n $ADDR ]]; then
  split_addr "$ADDR"
else
  resolve_broker
  start_broker
  HOST=127.0.0.1
  PORT=$BROKER_PORT
fi
ping_broker "$HOST" "$PORT"

# Payload files, before the clock starts: connection i sends COUNT[i]
# messages "i-j-" padded with x to SIZE bytes (cut to SIZE if longer).
COUNT=()
for ((i = 0; i < CONNECTIONS; i++)); do
  COUNT[i]=$((MESSAGES / CONNECTIONS + (i < MESSAGES % CONNECTIONS ? 1 : 0)))
  awk -v conn="$i" -v count="${COUNT[i]}" -v size="$SIZE" 'BEGIN {
    pad = "x"
    while (length(pad) < size) pad = pad pad
    for (j = 0; j < count; j++) {
      id = conn "-" j "-"
      if (length(id) >= size) print "PRODUCE " substr(id, 1, size)
      else print "PRODUCE " id substr(pad, 1, size - length(id))
    }
  }' >"$WORK/in.$i"
done

start=$(date +%s.%N)
for ((i = 0; i < CONNECTIONS; i++)); do
  timeout "$TIMEOUT" nc -N "$HOST" "$PORT" <"$WORK/in.$i" >"$WORK/out.$i" 2>"$WORK/err.$i" &
  NC_PIDS+=($!)
done
NC_STATUS=()
for ((i = 0; i < CONNECTIONS; i++)); do
  if wait "${NC_PIDS[i]}"; then NC_STATUS[i]=0; else NC_STATUS[i]=$?; fi
  unset 'NC_PIDS[i]' # reaped: cleanup must not signal this pid any more
done
end=$(date +%s.%N)

FAILED=0
fail() {
  say "$*"
  FAILED=1
}

# Replies: count ACKs per connection, collect their offsets.
: >"$WORK/offsets"
ACKS=0
for ((i = 0; i < CONNECTIONS; i++)); do
  if ((NC_STATUS[i] == 124)); then
    fail "connection $i: timed out after $TIMEOUT s"
  elif ((NC_STATUS[i] != 0)); then
    fail "connection $i: nc exited with status ${NC_STATUS[i]}: $(head -c 300 "$WORK/err.$i")"
  fi
  read -r acks others < <(awk -v conn="$i" -v offsets="$WORK/offsets" '
    /^ACK offset:[0-9]+$/ { acks++; print substr($0, 12) >>offsets; next }
    {
      others++
      if (others <= 3) printf "load: connection %d: reply %d is not an ACK: %s\n", conn, NR, $0 >"/dev/stderr"
    }
    END { print acks + 0, others + 0 }' "$WORK/out.$i")
  ACKS=$((ACKS + acks))
  if ((acks != COUNT[i] || others != 0)); then
    fail "connection $i: sent ${COUNT[i]} messages, got $acks ACKs and $others other replies"
  fi
done
if ((ACKS != MESSAGES)); then
  fail "got $ACKS ACKs for $MESSAGES messages"
fi

# Offsets: unique, and contiguous (from 0 on our own broker).
read -r n lowest highest dups < <(sort -n "$WORK/offsets" | awk '
  NR == 1 { low = $1 }
  NR > 1 && $1 == prev { dups++ }
  { prev = $1 }
  END { print NR, (NR ? low : "-"), (NR ? prev : "-"), dups + 0 }')
if ((n > 0)); then
  if ((dups > 0)); then
    fail "$dups ACK offsets were given more than once"
  fi
  if ((10#$highest - 10#$lowest + 1 != n)); then
    if [[ -n $ADDR ]]; then
      say "warning: ACK offsets $lowest..$highest are not contiguous (other producers?)"
    else
      fail "ACK offsets $lowest..$highest are not contiguous"
    fi
  elif [[ -z $ADDR && $lowest != 0 ]]; then
    fail "ACK offsets start at $lowest, not 0, on a fresh broker"
  fi
fi

if [[ -z $ADDR ]]; then
  stop_broker
  if [[ $BROKER_STATUS != 0 ]]; then
    fail "the broker exited with status $BROKER_STATUS after SIGTERM, not 0"
  fi
  # The log: line k is "offset:k message:<payload>", and the payloads are
  # the ones sent, each once.
  log=$BROKER_DATA/kafka_log.txt
  if [[ ! -f $log ]]; then
    fail "no $log"
  else
    read -r lines bad < <(awk -v messages="$WORK/logged" '
      {
        want = "offset:" (NR - 1) " message:"
        if (substr($0, 1, length(want)) == want) print substr($0, length(want) + 1) >messages
        else if (++bad <= 3) printf "load: kafka_log.txt line %d is not \"%s...\": %s\n", NR, want, substr($0, 1, 80) >"/dev/stderr"
      }
      END { print NR, bad + 0 }' "$log")
    if ((lines != MESSAGES || bad != 0)); then
      fail "kafka_log.txt has $lines lines ($bad out of sequence), expected $MESSAGES with offsets 0..$((MESSAGES - 1))"
    else
      sent=$(cat "$WORK"/in.* | cut -c9- | sort | cksum)
      logged=$(sort "$WORK/logged" | cksum)
      [[ $sent == "$logged" ]] || fail "kafka_log.txt does not hold exactly the payloads sent"
    fi
  fi
  ((FAILED == 0)) || show_broker_log
fi

if ((FAILED)); then
  say "FAILED"
  exit 1
fi
awk -v n="$MESSAGES" -v c="$CONNECTIONS" -v size="$SIZE" -v start="$start" -v end="$end" 'BEGIN {
  secs = end - start
  if (secs < 0.000001) secs = 0.000001
  printf "load: %d messages over %d connection%s in %.2f s: %.0f msg/s, %.1f MiB/s\n",
    n, c, (c == 1 ? "" : "s"), secs, n / secs, n * size / secs / 1048576
}'
