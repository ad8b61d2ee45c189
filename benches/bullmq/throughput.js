// BullMQ's drain on this machine, for comparison with `cargo bench --bench load -- --only
// drain,drain-chained --workers 16`: like BullMQ's own throughput benchmark, JOBS no-op
// jobs are added first (addBulk, timed apart), then one Worker at concurrency CONCURRENCY
// processes them. Each run starts a throwaway redis-server on a free port (no persistence,
// noeviction, as the load harness does) and prints jobs/s and the Redis CPU per job
// (INFO cpu used_cpu_user + used_cpu_sys over the drain / jobs); the summary is the median
// and range of the runs.
//
//   cd benches/bullmq && npm ci && node throughput.js [--runs 3] [--jobs 50000] [--concurrency 16]

'use strict';

const { spawn } = require('node:child_process');
const net = require('node:net');
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} takes a positive integer`);
  return value;
}

const RUNS = option('runs', 3);
const JOBS = option('jobs', 50000);
const CONCURRENCY = option('concurrency', 16);
const BULK = 1000;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'],
    { stdio: 'ignore' });
  // Retries until the server listens (a busy machine can take a while to start it).
  const probe = new IORedis({ port, maxRetriesPerRequest: null,
    retryStrategy: (n) => (n > 500 ? null : 20) });
  probe.on('error', () => {});
  try {
    await probe.ping();
  } catch (err) {
    probe.disconnect();
    child.kill();
    throw err;
  }
  return { port, child, admin: probe };
}

async function redisCpu(admin) {
  const info = await admin.info('cpu');
  const field = (name) => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)[1]);
  return field('used_cpu_user') + field('used_cpu_sys');
}

async function run() {
  const redis = await startRedis();
  const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null };
  const queue = new Queue('bench', { connection });
  try {
    for (let added = 0; added < JOBS; added += BULK) {
      const n = Math.min(BULK, JOBS - added);
      await queue.addBulk(Array.from({ length: n }, (_, i) => ({ name: 'noop', data: { i: added + i } })));
    }
    let done = 0;
    let finish;
    const finished = new Promise((resolve) => { finish = resolve; });
    const cpuBefore = await redisCpu(redis.admin);
    const start = process.hrtime.bigint();
    const worker = new Worker('bench', async () => {}, { connection, concurrency: CONCURRENCY });
    worker.on('completed', () => {
      done += 1;
      if (done === JOBS) finish();
    });
    worker.on('failed', (_job, err) => { throw err; });
    await finished;
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const cpu = await redisCpu(redis.admin) - cpuBefore;
    await worker.close();
    return { rate: JOBS / seconds, usPerJob: (cpu * 1e6) / JOBS, cpuPct: (100 * cpu) / seconds };
  } finally {
    await queue.close();
    redis.admin.disconnect();
    redis.child.kill();
  }
}

function summary(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)], min: sorted[0], max: sorted[sorted.length - 1] };
}

(async () => {
  const runs = [];
  for (let i = 0; i < RUNS; i += 1) {
    const r = await run();
    runs.push(r);
    console.log(`run ${i + 1}: ${r.rate.toFixed(0)} jobs/s, redis ${r.usPerJob.toFixed(1)} µs/job, ` +
      `redis ${r.cpuPct.toFixed(0)} % of a core`);
  }
  const rate = summary(runs.map((r) => r.rate));
  const us = summary(runs.map((r) => r.usPerJob));
  console.log(`bullmq ${require('bullmq/package.json').version}, ${JOBS} jobs, concurrency ${CONCURRENCY}, ` +
    `median of ${RUNS}: ${rate.median.toFixed(0)} jobs/s (${rate.min.toFixed(0)}–${rate.max.toFixed(0)}), ` +
    `redis ${us.median.toFixed(1)} µs/job (${us.min.toFixed(1)}–${us.max.toFixed(1)})`);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
