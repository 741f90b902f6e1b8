"""confluent-kafka (librdkafka) driven by the Rust tests.

Usage: ck.py COMMAND JSON_ARGS
Prints one JSON object per line on stdout (flushed as it goes); diagnostics
go to stderr. Every wait is bounded by a deadline from the arguments.
"""

import json
import sys
import time

import confluent_kafka
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def enc(s):
    return None if s is None else s.encode("utf-8")


def dec(b):
    return None if b is None else b.decode("utf-8")


def base_config(a):
    conf = {"bootstrap.servers": a["bootstrap"]}
    conf.update(a.get("config", {}))
    return conf


def err_json(err):
    return {"name": err.name(), "code": err.code(), "str": err.str()}


def on_error(err):
    out({"error_cb": err_json(err)})


def record_json(m):
    ts_type, ts = m.timestamp()
    return {
        "topic": m.topic(),
        "partition": m.partition(),
        "offset": m.offset(),
        "key": dec(m.key()),
        "value": dec(m.value()),
        "headers": [[k, dec(v)] for k, v in (m.headers() or [])],
        "timestamp": ts,
        "timestamp_type": ts_type,
    }


def produce(a):
    conf = base_config(a)
    conf["error_cb"] = on_error
    p = Producer(conf)

    def delivered(err, m):
        out(
            {
                "delivered": {
                    "error": None if err is None else err_json(err),
                    "partition": m.partition(),
                    "offset": m.offset(),
                    "key": dec(m.key()),
                    "value": dec(m.value()),
                }
            }
        )

    records = a.get("records", [])
    if "generate" in a:
        # Many records without a long command line: `m-<i>` for i in
        # start..end, record i to partition i % partitions.
        g = a["generate"]
        records = [{"value": "m-%d" % i, "partition": i % g["partitions"]} for i in range(g["start"], g["end"])]
    for r in records:
        kwargs = {"value": enc(r["value"]), "on_delivery": delivered}
        if r.get("key") is not None:
            kwargs["key"] = enc(r["key"])
        if r.get("headers"):
            kwargs["headers"] = [(k, enc(v)) for k, v in r["headers"]]
        if r.get("timestamp") is not None:
            kwargs["timestamp"] = r["timestamp"]
        if r.get("partition") is not None:
            kwargs["partition"] = r["partition"]
        p.produce(a["topic"], **kwargs)
        p.poll(0)
    remaining = p.flush(a.get("timeout_s", 20))
    out({"done": {"remaining": remaining}})


def new_consumer(a):
    conf = base_config(a)
    conf.setdefault("group.id", "ck-assign-only")
    conf.setdefault("enable.auto.commit", False)
    conf["error_cb"] = on_error
    return Consumer(conf)


def offset_of(spec):
    if spec == "beginning":
        return confluent_kafka.OFFSET_BEGINNING
    if spec == "end":
        return confluent_kafka.OFFSET_END
    return spec


def consume(a):
    """Assigns the partitions at an offset and reads `count` records (or
    until the deadline), then reports each partition's watermarks."""
    c = new_consumer(a)
    topic = a["topic"]
    parts = a.get("partitions", [0])
    c.assign([TopicPartition(topic, p, offset_of(a.get("offset", "beginning"))) for p in parts])
    deadline = time.monotonic() + a.get("timeout_s", 20)
    got = 0
    while got < a["count"] and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() != confluent_kafka.KafkaError._PARTITION_EOF:
                out({"consume_error": err_json(m.error())})
            continue
        out({"record": record_json(m)})
        got += 1
    for p in parts:
        try:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out({"watermarks": {"partition": p, "low": low, "high": high}})
        except KafkaException as e:
            out({"watermarks_error": dict(partition=p, **err_json(e.args[0]))})
    c.close()
    out({"done": {"count": got}})


def offsets(a):
    """Watermarks and offsets_for_times for an assigned consumer."""
    c = new_consumer(a)
    topic = a["topic"]
    c.assign([TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    out({"watermarks": {"partition": 0, "low": low, "high": high}})
    for ts in a["times"]:
        [tp] = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
        out({"for_time": {"timestamp": ts, "offset": tp.offset, "error": None if tp.error is None else err_json(tp.error)}})
    c.close()
    out({"done": {}})


def reset_latest(a):
    """Assigns partition 0 past its end with auto.offset.reset=latest, then
    produces `new-<i>` one at a time until the consumer receives one:
    prints every produced value and every received record."""
    c = new_consumer(a)
    topic = a["topic"]
    c.assign([TopicPartition(topic, 0, a["offset"])])
    p = Producer({"bootstrap.servers": a["bootstrap"]})
    deadline = time.monotonic() + a.get("timeout_s", 20)
    i = 0
    received = 0
    while received == 0 and time.monotonic() < deadline and i < 50:
        value = "new-%d" % i
        p.produce(topic, value=enc(value), partition=0)
        p.flush(10)
        out({"produced": value})
        i += 1
        poll_until = time.monotonic() + 0.5
        while time.monotonic() < poll_until:
            m = c.poll(0.1)
            if m is None or m.error():
                continue
            out({"record": record_json(m)})
            received += 1
    # Whatever else arrives for what was produced.
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    while time.monotonic() < deadline:
        pos = c.position([TopicPartition(topic, 0)])[0].offset
        if pos >= high:
            break
        m = c.poll(0.1)
        if m is not None and not m.error():
            out({"record": record_json(m)})
    c.close()
    out({"done": {"high": high}})


def create_topics(a):
    conf = base_config(a)
    admin = AdminClient(conf)
    new = [
        NewTopic(t["name"], num_partitions=t["partitions"], replication_factor=t.get("replication_factor", 1))
        for t in a["topics"]
    ]
    futures = admin.create_topics(new, operation_timeout=10, request_timeout=15)
    for name, f in futures.items():
        try:
            f.result(timeout=20)
            out({"created": {"topic": name, "error": None}})
        except KafkaException as e:
            out({"created": {"topic": name, "error": err_json(e.args[0])}})
    md = admin.list_topics(timeout=10)
    for t in a["topics"]:
        tm = md.topics.get(t["name"])
        out({"metadata": {"topic": t["name"], "partitions": None if tm is None else sorted(tm.partitions)}})
    out({"done": {}})


def load(a):
    """Produces `load-<i>` with acks=all as fast as the broker takes them,
    for at most `seconds` and `max` records; prints every acknowledged
    (offset, value) as its delivery report arrives."""
    conf = base_config(a)
    conf.setdefault("acks", "all")
    conf.setdefault("message.timeout.ms", 5000)
    conf.setdefault("linger.ms", 2)
    p = Producer(conf)
    failed = [0]

    def delivered(err, m):
        if err is None:
            out({"acked": {"offset": m.offset(), "value": dec(m.value())}})
        else:
            failed[0] += 1

    end = time.monotonic() + a["seconds"]
    i = 0
    while i < a["max"] and time.monotonic() < end:
        try:
            p.produce(a["topic"], value=enc("load-%d" % i), partition=0, on_delivery=delivered)
            i += 1
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    remaining = p.flush(a.get("flush_s", 10))
    out({"done": {"produced": i, "failed": failed[0], "remaining": remaining}})


def metadata(a):
    """list_topics through a producer configured by `config` (SASL tests);
    then produces one record and reports its delivery."""
    conf = base_config(a)
    conf["error_cb"] = on_error
    p = Producer(conf)
    try:
        md = p.list_topics(timeout=a.get("timeout_s", 5))
        out({"metadata": {"brokers": len(md.brokers), "topics": sorted(md.topics)}})
    except KafkaException as e:
        # Serve the error callbacks (the authentication error comes there).
        p.poll(1.0)
        out({"metadata_error": err_json(e.args[0])})
        out({"done": {}})
        return

    def delivered(err, m):
        out({"delivered": {"error": None if err is None else err_json(err), "offset": m.offset()}})

    p.produce(a["topic"], value=enc(a["value"]), partition=0, on_delivery=delivered)
    p.flush(a.get("timeout_s", 5))
    out({"done": {}})


def stdin_closer():
    """An event set when stdin says `close` or ends."""
    import threading

    stop = threading.Event()

    def watch():
        for line in sys.stdin:
            if line.strip() == "close":
                break
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    return stop


def group(a):
    """A group member subscribed to `topic`: prints its assignment at each
    rebalance, every record, and the offsets it commits (synchronously,
    after each batch, so everything printed is committed before the next
    poll); `close` on stdin (or its end) closes it, leaving the group."""
    conf = base_config(a)
    conf.update(
        {
            "group.id": a["group"],
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": a.get("session_timeout_ms", 6000),
            "heartbeat.interval.ms": 500,
            "error_cb": on_error,
        }
    )
    c = Consumer(conf)
    stop = stdin_closer()

    def on_assign(consumer, parts):
        out({"assigned": sorted(p.partition for p in parts)})

    def on_revoke(consumer, parts):
        out({"revoked": sorted(p.partition for p in parts)})

    c.subscribe([a["topic"]], on_assign=on_assign, on_revoke=on_revoke)
    deadline = time.monotonic() + a.get("max_s", 90)
    while not stop.is_set() and time.monotonic() < deadline:
        msgs = c.consume(num_messages=500, timeout=0.2)
        got = False
        for m in msgs:
            if m.error():
                if m.error().code() != confluent_kafka.KafkaError._PARTITION_EOF:
                    out({"consume_error": err_json(m.error())})
                continue
            out({"record": record_json(m)})
            got = True
        if got:
            try:
                parts = c.commit(asynchronous=False)
                out({"committed": sorted([p.partition, p.offset] for p in parts)})
            except KafkaException as e:
                out({"commit_error": err_json(e.args[0])})
    c.close()
    out({"closed": {}})


COMMANDS = {
    "group": group,
    "produce": produce,
    "consume": consume,
    "offsets": offsets,
    "reset_latest": reset_latest,
    "create_topics": create_topics,
    "load": load,
    "metadata": metadata,
}

if __name__ == "__main__":
    out({"version": {"confluent_kafka": confluent_kafka.__version__, "librdkafka": confluent_kafka.libversion()[0]}})
    COMMANDS[sys.argv[1]](json.loads(sys.argv[2]))
