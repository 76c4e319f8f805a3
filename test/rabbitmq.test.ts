import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import amqp from 'amqplib';
import { rabbitmqBinary, startRabbitMQ, type RabbitMQServer } from '../scripts/rabbitmq.js';

const noRabbitMQ = rabbitmqBinary() === null ? 'no RabbitMQ: run `bash scripts/setup.sh` as root (it installs Debian\'s rabbitmq-server) or set RABBITMQ_SERVER' : false;

/** Whether the process lives (a zombie is dead, merely not reaped yet). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Live processes working in `dir` (scripts/rabbitmq.ts starts epmd and the broker there): pid → command name. */
function processesIn(dir: string): Map<number, string> {
  const found = new Map<number, string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/cwd`) !== dir || !alive(Number(entry))) continue;
      found.set(Number(entry), readFileSync(`/proc/${entry}/comm`, 'utf8').trim());
    } catch {
      // Gone meanwhile, or not ours to look at.
    }
  }
  return found;
}

/** Publishes persistent messages to a durable queue, and waits for the broker's confirms (they are on disk then). */
async function publishDurably(url: string, queue: string, bodies: string[]): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true });
    for (const body of bodies) channel.sendToQueue(queue, Buffer.from(body), { persistent: true });
    await channel.waitForConfirms();
    await channel.close();
  } finally {
    await connection.close();
  }
}

/** Takes every message of the queue (at most `max`), acknowledging them. */
async function drain(url: string, queue: string, max = 100): Promise<string[]> {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createChannel();
    await channel.checkQueue(queue);
    const bodies: string[] = [];
    for (let i = 0; i < max; i++) {
      const message = await channel.get(queue, { noAck: true });
      if (message === false) break;
      bodies.push(message.content.toString());
    }
    await channel.close();
    return bodies;
  } finally {
    await connection.close();
  }
}

describe('RabbitMQ for the embedded stack (scripts/rabbitmq.ts)', { skip: noRabbitMQ, timeout: 240_000 }, () => {
  let dataDir: string;
  let server: RabbitMQServer;

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'kumo-rabbitmq-test-'));
    server = await startRabbitMQ({ dataDir });
  });
  after(async () => {
    await server?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('it listens on loopback and takes guest/guest', async () => {
    assert.ok(server.port > 0);
    assert.equal(server.url, `amqp://guest:guest@127.0.0.1:${server.port}`);
    const connection = await amqp.connect(server.url);
    await connection.close();
  });

  test('a durable queue keeps its persistent messages across stop() and start()', async () => {
    const queue = 'kumo.test.durable';
    await publishDurably(server.url, queue, ['one', 'two', 'three']);
    await server.stop();
    await assert.rejects(amqp.connect(server.url));
    await server.stop(); // twice is fine
    await server.start();
    assert.deepEqual(await drain(server.url, queue), ['one', 'two', 'three']);
  });

  test('after kill() (a crash), start() brings it back with its confirmed messages', async () => {
    // The queue of the test before, whose declaration a clean stop has written out: a
    // queue declared just before a kill -9 may be lost with it (RabbitMQ writes its
    // metadata log lazily), while a confirmed persistent message is on disk.
    const queue = 'kumo.test.durable';
    await publishDurably(server.url, queue, ['before the crash']);
    await server.kill();
    await assert.rejects(amqp.connect(server.url));
    await server.start();
    assert.deepEqual(await drain(server.url, queue), ['before the crash']);
    await server.start(); // already running: nothing to do
  });

  test('close() leaves no beam.smp or epmd of ours', async () => {
    const before = processesIn(dataDir);
    const names = [...before.values()];
    assert.ok(names.includes('beam.smp'), `no beam.smp working in the data dir: ${names.join(', ')}`);
    assert.ok(names.includes('epmd'), `no epmd working in the data dir: ${names.join(', ')}`);
    await server.close();
    for (const [pid, name] of before) assert.equal(alive(pid), false, `${name} (pid ${pid}) is still running`);
    assert.deepEqual([...processesIn(dataDir).values()], []);
    await assert.rejects(amqp.connect(server.url));
    await server.close(); // twice is fine
    await assert.rejects(server.start(), /closed/);
  });

  test('a port given is used, and one taken fails with eaddrinuse rather than another port', async () => {
    const first = await startRabbitMQ({ dataDir: join(dataDir, 'first') });
    try {
      const second = await startRabbitMQ({ dataDir: join(dataDir, 'second'), port: first.port }).catch((err: Error) => err);
      if (!(second instanceof Error)) {
        await second.close();
        assert.fail('a second broker started on a port the first one holds');
      }
      assert.match(second.message, /eaddrinuse/);
      // The failed one left nothing behind.
      assert.deepEqual([...processesIn(join(dataDir, 'second')).values()], []);
    } finally {
      await first.close();
    }
    const again = await startRabbitMQ({ dataDir: join(dataDir, 'first'), port: first.port });
    try {
      assert.equal(again.port, first.port);
      const connection = await amqp.connect(again.url);
      await connection.close();
    } finally {
      await again.close();
    }
  });
});
