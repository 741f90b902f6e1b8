// kafkajs driven by the Rust tests.
//
// Usage: node kjs.js COMMAND JSON_ARGS
// Prints one JSON object per line on stdout; kafkajs's own log goes to
// stderr. Every wait is bounded by a deadline from the arguments.
'use strict'

const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const { version } = require('kafkajs/package.json')

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec

function out (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function client (a, id) {
  return new Kafka({
    clientId: id,
    brokers: [a.bootstrap],
    connectionTimeout: 5000,
    requestTimeout: 10000,
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
    logLevel: logLevel.WARN,
    logCreator: () => ({ namespace, level, label, log }) => {
      process.stderr.write(`kafkajs ${label} ${namespace} ${JSON.stringify(log)}\n`)
    }
  })
}

const COMPRESSION = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy
}

function errJson (e) {
  return { name: e.name, type: e.type || null, message: e.message }
}

async function produce (a) {
  const producer = client(a, 'kjs-producer').producer({ idempotent: !!a.idempotent, allowAutoTopicCreation: true })
  await producer.connect()
  const messages = a.records.map(r => {
    const m = { value: r.value }
    if (r.key != null) m.key = r.key
    if (r.headers) m.headers = Object.fromEntries(r.headers)
    if (r.timestamp != null) m.timestamp = String(r.timestamp)
    if (r.partition != null) m.partition = r.partition
    return m
  })
  const acks = a.acks == null ? -1 : a.acks
  const result = await producer.send({
    topic: a.topic,
    acks,
    compression: COMPRESSION[a.compression || 'none'],
    messages
  })
  for (const r of result) {
    out({ sent: { partition: r.partition, error_code: r.errorCode, base_offset: r.baseOffset == null ? null : Number(r.baseOffset) } })
  }
  await producer.disconnect()
  out({ done: {} })
}

async function admin (a) {
  const adm = client(a, 'kjs-admin').admin()
  await adm.connect()
  for (const t of a.topics) {
    try {
      const created = await adm.createTopics({
        topics: [{ topic: t.name, numPartitions: t.partitions, replicationFactor: t.replication_factor || 1 }],
        timeout: 10000
      })
      out({ created: { topic: t.name, result: created, error: null } })
    } catch (e) {
      const inner = (e.errors && e.errors[0]) || e
      out({ created: { topic: t.name, result: null, error: errJson(inner) } })
    }
  }
  for (const t of a.topics) {
    try {
      const md = await adm.fetchTopicMetadata({ topics: [t.name] })
      const parts = md.topics[0].partitions.map(p => p.partitionId).sort((x, y) => x - y)
      out({ metadata: { topic: t.name, partitions: parts } })
    } catch (e) {
      out({ metadata: { topic: t.name, partitions: null, error: errJson(e) } })
    }
  }
  if (a.offsets_topic) {
    const offsets = await adm.fetchTopicOffsets(a.offsets_topic)
    for (const o of offsets.sort((x, y) => x.partition - y.partition)) {
      out({ watermarks: { partition: o.partition, low: Number(o.low), high: Number(o.high) } })
    }
  }
  await adm.disconnect()
  out({ done: {} })
}

// A group member subscribed to `topic`: prints its assignment at each
// join, every record, and the offsets it commits after each batch;
// `close` on stdin (or its end) disconnects it, leaving the group.
async function group (a) {
  const consumer = client(a, 'kjs-group').consumer({
    groupId: a.group,
    sessionTimeout: a.session_timeout_ms || 6000,
    heartbeatInterval: 500,
    maxWaitTimeInMs: 200
  })
  let closing = null
  const close = () => {
    if (!closing) {
      closing = consumer.disconnect().then(() => {
        out({ closed: {} })
        process.exit(0)
      })
    }
  }
  process.stdin.setEncoding('utf8')
  let buffered = ''
  process.stdin.on('data', chunk => {
    buffered += chunk
    if (buffered.split('\n').some(l => l.trim() === 'close')) close()
  })
  process.stdin.on('end', close)
  setTimeout(close, (a.max_s || 90) * 1000)
  consumer.on(consumer.events.GROUP_JOIN, e => {
    const parts = (e.payload.memberAssignment[a.topic] || []).slice().sort((x, y) => x - y)
    out({ assigned: parts })
  })
  consumer.on(consumer.events.REBALANCING, () => out({ rebalancing: {} }))
  await consumer.connect()
  await consumer.subscribe({ topic: a.topic, fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
      if (batch.messages.length === 0) return
      for (const m of batch.messages) {
        out({
          record: {
            topic: batch.topic,
            partition: batch.partition,
            offset: Number(m.offset),
            key: m.key == null ? null : m.key.toString(),
            value: m.value.toString(),
            headers: Object.entries(m.headers || {}).map(([k, v]) => [k, v.toString()]),
            timestamp: Number(m.timestamp),
            timestamp_type: 0
          }
        })
        resolveOffset(m.offset)
      }
      const next = (Number(batch.lastOffset()) + 1).toString()
      await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: next }])
      out({ committed: [[batch.partition, Number(next)]] })
      await heartbeat()
    }
  })
  // Runs until `close`.
  await new Promise(() => {})
}

const COMMANDS = { produce, admin, group }

async function main () {
  out({ version: { kafkajs: version } })
  const timeout = setTimeout(() => {
    out({ timeout: {} })
    process.exit(3)
  }, process.argv[2] === 'group' ? 120000 : 25000)
  await COMMANDS[process.argv[2]](JSON.parse(process.argv[3]))
  clearTimeout(timeout)
}

main().catch(e => {
  out({ fatal: errJson(e) })
  process.exit(1)
})
