"""kafka-python driven by the Rust tests.

Usage: kp.py COMMAND JSON_ARGS
Prints one JSON object per line on stdout (flushed as it goes); diagnostics
go to stderr. Every wait is bounded by a deadline from the arguments.
"""

import json
import sys
import time

import kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def enc(s):
    return None if s is None else s.encode("utf-8")


def dec(b):
    return None if b is None else b.decode("utf-8")


def record_json(r):
    return {
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "key": dec(r.key),
        "value": dec(r.value),
        "headers": [[k, dec(v)] for k, v in (r.headers or [])],
        "timestamp": r.timestamp,
        "timestamp_type": r.timestamp_type,
    }


def produce(a):
    conf = dict(bootstrap_servers=a["bootstrap"], request_timeout_ms=10000, max_block_ms=10000)
    conf.update(a.get("config", {}))
    p = KafkaProducer(**conf)
    futures = []
    for r in a["records"]:
        kwargs = {"value": enc(r["value"])}
        if r.get("key") is not None:
            kwargs["key"] = enc(r["key"])
        if r.get("headers"):
            kwargs["headers"] = [(k, enc(v)) for k, v in r["headers"]]
        if r.get("timestamp") is not None:
            kwargs["timestamp_ms"] = r["timestamp"]
        if r.get("partition") is not None:
            kwargs["partition"] = r["partition"]
        futures.append((r, p.send(a["topic"], **kwargs)))
    p.flush(timeout=a.get("timeout_s", 20))
    for r, f in futures:
        try:
            md = f.get(timeout=a.get("timeout_s", 20))
            out({"delivered": {"error": None, "partition": md.partition, "offset": md.offset, "key": r.get("key"), "value": r["value"]}})
        except Exception as e:  # the test asserts on what is printed
            out({"delivered": {"error": {"name": type(e).__name__, "str": str(e)}, "key": r.get("key"), "value": r["value"]}})
    p.close(timeout=5)
    out({"done": {}})


def new_consumer(a):
    conf = dict(
        bootstrap_servers=a["bootstrap"],
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=10000,
    )
    conf.update(a.get("config", {}))
    return KafkaConsumer(**conf)


def consume(a):
    c = new_consumer(a)
    topic = a["topic"]
    tps = [TopicPartition(topic, p) for p in a.get("partitions", [0])]
    c.assign(tps)
    offset = a.get("offset", "beginning")
    for tp in tps:
        if offset == "beginning":
            c.seek_to_beginning(tp)
        else:
            c.seek(tp, offset)
    deadline = time.monotonic() + a.get("timeout_s", 20)
    got = 0
    while got < a["count"] and time.monotonic() < deadline:
        for _tp, records in c.poll(timeout_ms=200, max_records=a["count"] - got).items():
            for r in records:
                out({"record": record_json(r)})
                got += 1
    begin = c.beginning_offsets(tps, timeout_ms=10000)
    end = c.end_offsets(tps, timeout_ms=10000)
    for tp in tps:
        out({"watermarks": {"partition": tp.partition, "low": begin[tp], "high": end[tp]}})
    c.close()
    out({"done": {"count": got}})


def offsets(a):
    c = new_consumer(a)
    tp = TopicPartition(a["topic"], 0)
    c.assign([tp])
    begin = c.beginning_offsets([tp], timeout_ms=10000)[tp]
    end = c.end_offsets([tp], timeout_ms=10000)[tp]
    out({"watermarks": {"partition": 0, "low": begin, "high": end}})
    for ts in a["times"]:
        found = c.offsets_for_times({tp: ts}, timeout_ms=10000)[tp]
        out({"for_time": {"timestamp": ts, "offset": None if found is None else found.offset,
                          "found_timestamp": None if found is None else found.timestamp}})
    c.close()
    out({"done": {}})


def reset_latest(a):
    """Like ck.py reset_latest: assigned past the end with
    auto_offset_reset=latest, produce `new-<i>` until one is received."""
    conf = a.setdefault("config", {})
    conf["auto_offset_reset"] = "latest"
    c = new_consumer(a)
    topic = a["topic"]
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek(tp, a["offset"])
    p = KafkaProducer(bootstrap_servers=a["bootstrap"], acks=1)
    deadline = time.monotonic() + a.get("timeout_s", 20)
    i = 0
    received = 0
    while received == 0 and time.monotonic() < deadline and i < 50:
        value = "new-%d" % i
        p.send(topic, value=enc(value), partition=0).get(timeout=10)
        out({"produced": value})
        i += 1
        poll_until = time.monotonic() + 0.5
        while time.monotonic() < poll_until:
            for _tp, records in c.poll(timeout_ms=100).items():
                for r in records:
                    out({"record": record_json(r)})
                    received += 1
    high = c.end_offsets([tp], timeout_ms=10000)[tp]
    while time.monotonic() < deadline and c.position(tp) < high:
        for _tp, records in c.poll(timeout_ms=100).items():
            for r in records:
                out({"record": record_json(r)})
    p.close(timeout=5)
    c.close()
    out({"done": {"high": high}})


def group(a):
    """Like ck.py group, with kafka-python's KafkaConsumer.subscribe."""
    import threading

    from kafka import ConsumerRebalanceListener

    stop = threading.Event()

    def watch():
        for line in sys.stdin:
            if line.strip() == "close":
                break
        stop.set()

    threading.Thread(target=watch, daemon=True).start()

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            out({"revoked": sorted(tp.partition for tp in revoked)})

        def on_partitions_assigned(self, assigned):
            out({"assigned": sorted(tp.partition for tp in assigned)})

    c = KafkaConsumer(
        bootstrap_servers=a["bootstrap"],
        group_id=a["group"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=a.get("session_timeout_ms", 6000),
        heartbeat_interval_ms=500,
        request_timeout_ms=30000,
    )
    c.subscribe([a["topic"]], listener=Listener())
    deadline = time.monotonic() + a.get("max_s", 90)
    while not stop.is_set() and time.monotonic() < deadline:
        batch = c.poll(timeout_ms=200, max_records=500)
        got = False
        for _tp, records in batch.items():
            for r in records:
                out({"record": record_json(r)})
                got = True
        if got:
            try:
                c.commit()
                out({"committed": sorted([tp.partition, c.position(tp)] for tp in c.assignment())})
            except Exception as e:  # printed for the test to see
                out({"commit_error": {"name": type(e).__name__, "str": str(e)}})
    c.close()
    out({"closed": {}})


COMMANDS = {
    "group": group,
    "produce": produce,
    "consume": consume,
    "offsets": offsets,
    "reset_latest": reset_latest,
}

if __name__ == "__main__":
    out({"version": {"kafka_python": kafka.__version__}})
    COMMANDS[sys.argv[1]](json.loads(sys.argv[2]))
