"""Protocol-level checks built from kafka-python's own request classes and
record-batch builder (no hand-written encodings), over a plain socket.

Usage: kp_wire.py COMMAND JSON_ARGS
Prints one JSON object per line on stdout.
"""

import json
import socket
import struct
import sys

import kafka
from kafka.protocol.consumer import FetchRequest
from kafka.protocol.metadata import MetadataRequest
from kafka.protocol.parser import KafkaProtocol
from kafka.protocol.producer import InitProducerIdRequest, ProduceRequest
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder

PRODUCE_VERSION = 7


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Conn:
    """One connection: requests encoded and responses decoded by
    kafka-python's KafkaProtocol."""

    def __init__(self, bootstrap):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.proto = KafkaProtocol(client_id="kp-wire")

    def call(self, request):
        self.proto.send_request(request)
        self.sock.sendall(self.proto.send_bytes())
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("the broker closed the connection")
            responses = self.proto.receive_bytes(data)
            if responses:
                [(_cid, response)] = responses
                return response

    def send_raw(self, request, correlation_id):
        """Encodes `request` with its header and sends it, expecting no
        bookkeeping from the parser."""
        request.with_header(correlation_id=correlation_id, client_id="kp-wire")
        self.sock.sendall(request.encode(framed=True, header=True))

    def read_frame(self):
        def exact(n):
            buf = b""
            while len(buf) < n:
                chunk = self.sock.recv(n - len(buf))
                if not chunk:
                    raise RuntimeError("the broker closed the connection")
                buf += chunk
            return buf

        (size,) = struct.unpack(">i", exact(4))
        return exact(size)


def create_topic(conn, topic):
    md = conn.call(
        MetadataRequest[4](
            topics=[MetadataRequest.MetadataRequestTopic(name=topic)],
            allow_auto_topic_creation=True,
        )
    )
    return md.topics[0].error_code


def batch(producer_id, epoch, base_sequence, values):
    builder = MemoryRecordsBuilder(
        magic=2,
        compression_type=0,
        batch_size=1 << 20,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=base_sequence,
    )
    for i, v in enumerate(values):
        builder.append(timestamp=1_700_000_000_000 + i, key=None, value=v.encode(), headers=[])
    builder.close()
    return bytes(builder.buffer())


def produce_request(topic, records, acks=-1):
    return ProduceRequest[PRODUCE_VERSION](
        transactional_id=None,
        acks=acks,
        timeout_ms=10000,
        topic_data=[
            ProduceRequest.TopicProduceData(
                name=topic,
                partition_data=[ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=records)],
            )
        ],
    )


def produce(conn, topic, records):
    resp = conn.call(produce_request(topic, records))
    part = resp.responses[0].partition_responses[0]
    return {"error_code": part.error_code, "base_offset": part.base_offset}


def idempotent(a):
    """InitProducerId, then batches with explicit sequences: a batch, the
    next, the first resent byte for byte, the second resent, a gap, and the
    next in-order batch after the refused gap."""
    conn = Conn(a["bootstrap"])
    topic = a["topic"]
    out({"metadata": {"error_code": create_topic(conn, topic)}})
    init = conn.call(InitProducerIdRequest[1](transactional_id=None, transaction_timeout_ms=60000))
    out({"init": {"error_code": init.error_code, "producer_id": init.producer_id, "epoch": init.producer_epoch}})
    pid, epoch = init.producer_id, init.producer_epoch
    first = batch(pid, epoch, 0, ["a0", "a1", "a2"])
    second = batch(pid, epoch, 3, ["b0", "b1"])
    steps = [
        ("first", first),
        ("second", second),
        ("first_again", first),
        ("second_again", second),
        ("gap", batch(pid, epoch, 10, ["gap0"])),
        ("third", batch(pid, epoch, 5, ["c0"])),
    ]
    for name, records in steps:
        out({"produce": dict(step=name, **produce(conn, topic, records))})
    out({"done": {}})


def replay(a):
    """After a restart: the first and third batches of `idempotent` again
    (same producer id, epoch and sequences), then the next in order."""
    conn = Conn(a["bootstrap"])
    topic = a["topic"]
    pid, epoch = a["producer_id"], a["epoch"]
    steps = [
        ("first_again", batch(pid, epoch, 0, ["a0", "a1", "a2"])),
        ("third_again", batch(pid, epoch, 5, ["c0"])),
        ("fourth", batch(pid, epoch, 6, ["d0"])),
    ]
    for name, records in steps:
        out({"produce": dict(step=name, **produce(conn, topic, records))})
    out({"done": {}})


def acks0(a):
    """A Produce with acks=0 (correlation id 100) followed by a Metadata
    request (101): the first response on the connection must be 101's."""
    conn = Conn(a["bootstrap"])
    topic = a["topic"]
    out({"metadata": {"error_code": create_topic(conn, topic)}})
    builder = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20)
    for i, v in enumerate(a["values"]):
        builder.append(timestamp=1_700_000_000_000 + i, key=None, value=v.encode(), headers=[])
    builder.close()
    records = bytes(builder.buffer())
    conn.send_raw(produce_request(topic, records, acks=0), correlation_id=100)
    conn.send_raw(
        MetadataRequest[4](topics=[MetadataRequest.MetadataRequestTopic(name=topic)], allow_auto_topic_creation=False),
        correlation_id=101,
    )
    try:
        frame = conn.read_frame()
    except (RuntimeError, ConnectionResetError):
        # A refused acks=0 batch closes the connection (nothing else
        # would tell the producer).
        out({"closed": {}})
    else:
        (cid,) = struct.unpack(">i", frame[:4])
        out({"first_response": {"correlation_id": cid}})
    out({"done": {}})


def batches(a):
    """Fetches partition 0 from offset 0 with a raw Fetch v4 and prints
    each stored batch's base offset, codec and record count, as decoded
    by kafka-python's MemoryRecords (which also checks the CRC)."""
    conn = Conn(a["bootstrap"])
    resp = conn.call(
        FetchRequest[4](
            replica_id=-1,
            max_wait_ms=0,
            min_bytes=0,
            max_bytes=16 << 20,
            isolation_level=0,
            topics=[
                FetchRequest.FetchTopic(
                    topic=a["topic"],
                    partitions=[FetchRequest.FetchTopic.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=16 << 20)],
                )
            ],
        )
    )
    part = resp.responses[0].partitions[0]
    out({"fetch": {"error_code": part.error_code, "high_watermark": part.high_watermark}})
    records = MemoryRecords(bytes(part.records or b""))
    while records.has_next():
        b = records.next_batch()
        crc_ok = b.validate_crc()
        values = [r.value.decode() for r in b]
        out({"batch": {"base_offset": b.base_offset, "compression": CODECS[b.compression_type],
                       "crc_ok": crc_ok, "values": values}})
    out({"done": {}})


CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

COMMANDS = {"idempotent": idempotent, "replay": replay, "acks0": acks0, "batches": batches}

if __name__ == "__main__":
    out({"version": {"kafka_python": kafka.__version__}})
    COMMANDS[sys.argv[1]](json.loads(sys.argv[2]))
