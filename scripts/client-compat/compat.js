#!/usr/bin/env node
// Exercise the Node.js Redis clients (node-redis, ioredis, connect-redis on
// node-redis) against one Redis-protocol endpoint, each with its default
// settings, and print one line per library and check:
//
//   PASS <library> <check> [detail]
//   FAIL <library> <check> <reason>
//   INFO <library> <key>=<value>
//
// Usage: node compat.js --port PORT [--host 127.0.0.1] [--only LIB[,LIB]]
// Libraries: node-redis, node-redis-resp2, ioredis, ioredis-resp2,
// connect-redis. Exit status 1 when any check failed.
//
// Run it from a directory whose node_modules holds the packages of
// package.json beside this file (scripts/client-compat.sh does that).
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const args = process.argv.slice(2);
function opt(name, dflt) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}
const HOST = opt('--host', '127.0.0.1');
const PORT = Number(opt('--port', '6379'));
const ONLY = opt('--only', '');
const CHECK_TIMEOUT_MS = Number(opt('--timeout-ms', '15000'));
const RUN = crypto.randomBytes(4).toString('hex');

let failures = 0;

function say(line) {
  process.stdout.write(line + '\n');
}

function pkgVersion(name) {
  // Some packages (connect-redis) do not export package.json; read the file.
  for (const base of module.paths.concat([path.join(process.cwd(), 'node_modules')])) {
    try {
      return JSON.parse(fs.readFileSync(path.join(base, name, 'package.json'), 'utf8')).version;
    } catch (_) { /* next */ }
  }
  return 'unknown';
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms (${what})`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function short(v) {
  let s;
  if (Buffer.isBuffer(v)) s = `<Buffer ${v.toString('hex')}>`;
  else if (v instanceof Map) s = `Map(${JSON.stringify([...v.entries()].map(([k, x]) => [String(k), String(x)]))})`;
  else {
    try { s = JSON.stringify(v); } catch (_) { s = String(v); }
    if (s === undefined) s = String(v);
  }
  return s.length > 300 ? s.slice(0, 300) + '...' : s;
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function assertEq(actual, expected, what) {
  const a = short(actual);
  const e = short(expected);
  if (a !== e) throw new Error(`${what}: got ${a}, expected ${e}`);
}

// Run one check; a failure is reported and counted, never thrown.
async function check(lib, name, fn) {
  try {
    const detail = await withTimeout(Promise.resolve().then(fn), CHECK_TIMEOUT_MS, name);
    say(`PASS ${lib} ${name}${detail ? ' ' + detail : ''}`);
    return true;
  } catch (e) {
    failures++;
    const msg = String((e && e.message) || e).replace(/\s+/g, ' ');
    say(`FAIL ${lib} ${name} ${msg}`);
    return false;
  }
}

// A value with every byte 0..255, CR LF and NUL included.
function binaryValue() {
  const b = Buffer.alloc(256 + 6);
  for (let i = 0; i < 256; i++) b[i] = i;
  b.write('\r\n\0\r\n\0', 256, 'latin1');
  return b;
}

// Poll INFO clients (forwarded to Redis) until at least one client is
// blocked, so the unblocking push is sent only once BLPOP is waiting.
async function waitBlocked(infoFn) {
  for (let i = 0; i < 500; i++) {
    const info = String(await infoFn());
    const m = /blocked_clients:(\d+)/.exec(info);
    if (m && Number(m[1]) >= 1) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('no client became blocked within 5 s');
}

// Parse the CLIENT INFO line into an object.
function parseClientInfo(text) {
  const out = {};
  for (const part of String(text).trim().split(' ')) {
    const eq = part.indexOf('=');
    if (eq > 0) out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

function recordClientInfo(lib, text) {
  const ci = parseClientInfo(text);
  say(`INFO ${lib} client-info resp=${ci.resp} lib-name=${ci['lib-name'] || ''} lib-ver=${ci['lib-ver'] || ''} name=${ci.name || ''}`);
  return ci;
}

// ------------------------------------------------------------------ node-redis
async function nodeRedis(lib, resp) {
  const { createClient, RESP_TYPES, WatchError } = require('redis');
  say(`INFO ${lib} version=${pkgVersion('redis')} client=${pkgVersion('@redis/client')}`);
  const url = `redis://${HOST}:${PORT}`;
  const clientOpts = resp ? { url, RESP: resp } : { url };
  const expectResp = resp || 3; // DEFAULT_RESP of node-redis 5 and later
  const k = (s) => `cc:${lib}:${RUN}:${s}`;
  const opened = [];
  const errors = [];
  const open = async (extra) => {
    const c = createClient({ ...clientOpts, ...(extra || {}) });
    c.on('error', (e) => errors.push(String(e && e.message)));
    opened.push(c);
    await c.connect();
    return c;
  };
  let client;
  const ok = await check(lib, 'connect', async () => {
    client = await open();
    const ci = recordClientInfo(lib, await client.sendCommand(['CLIENT', 'INFO']));
    assertEq(ci.resp, String(expectResp), 'CLIENT INFO resp');
    return `resp=${ci.resp}`;
  });
  if (!ok) {
    await closeAll(opened);
    return;
  }
  await check(lib, 'ping', async () => assertEq(await client.ping(), 'PONG', 'PING'));
  await check(lib, 'set-get-binary', async () => {
    const v = binaryValue();
    assertEq(await client.set(k('bin'), v), 'OK', 'SET');
    const got = await client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }).get(k('bin'));
    assert(Buffer.isBuffer(got) && got.equals(v), `GET returned ${short(got)}`);
    assertEq(await client.get(k('missing')), null, 'GET missing');
  });
  await check(lib, 'hset-hgetall', async () => {
    assertEq(await client.hSet(k('h'), { a: '1', b: 'two', 'c\r\n': 'x\0y' }), 3, 'HSET');
    assertEq(await client.hGetAll(k('h')), { a: '1', b: 'two', 'c\r\n': 'x\0y' }, 'HGETALL');
    // The raw reply: a RESP3 map decodes to a Map under this type mapping,
    // a RESP2 array stays an array.
    const raw = await client.sendCommand(['HGETALL', k('h')], { typeMapping: { [RESP_TYPES.MAP]: Map } });
    if (expectResp === 3) {
      assert(raw instanceof Map, `HGETALL raw reply is not a RESP3 map: ${short(raw)}`);
      return 'reply=map';
    }
    assert(Array.isArray(raw) && raw.length === 6, `HGETALL raw reply is not a flat array: ${short(raw)}`);
    return 'reply=array';
  });
  await check(lib, 'multi-exec', async () => {
    const res = await client.multi().set(k('m'), '1').incr(k('m')).get(k('m')).hSet(k('mh'), 'f', 'v').hGetAll(k('mh')).exec();
    assertEq(res, ['OK', 2, '2', 1, { f: 'v' }], 'EXEC');
  });
  await check(lib, 'watch-abort', async () => {
    const w = await open();
    const other = await open();
    await w.set(k('w'), '0');
    await w.watch(k('w'));
    await other.set(k('w'), 'changed');
    let err = null;
    try {
      await w.multi().set(k('w'), 'mine').exec();
    } catch (e) {
      err = e;
    }
    assert(err instanceof WatchError, `EXEC after a conflicting write did not raise WatchError: ${short(err && err.message)}`);
    assertEq(await client.get(k('w')), 'changed', 'value after the aborted transaction');
  });
  await check(lib, 'pipeline-100', async () => {
    const m = client.multi();
    for (let i = 0; i < 50; i++) m.set(k(`p${i}`), String(i));
    for (let i = 0; i < 49; i++) m.get(k(`p${i}`));
    m.incr(k('p0'));
    const res = await m.execAsPipeline();
    assertEq(res.length, 100, 'replies');
    for (let i = 0; i < 50; i++) assertEq(res[i], 'OK', `reply ${i}`);
    for (let i = 0; i < 49; i++) assertEq(res[50 + i], String(i), `reply ${50 + i}`);
    assertEq(res[99], 1, 'reply 99');
    // And 100 concurrent commands on one connection (auto-pipelined).
    const par = await Promise.all(Array.from({ length: 100 }, (_, i) => client.incr(k('ap'))));
    assertEq(par[99], 100, 'last INCR of 100 concurrent');
  });
  await check(lib, 'pubsub', async () => {
    const sub = await open();
    const ch = k('ch');
    const got = deferred();
    const gotP = deferred();
    await sub.subscribe(ch, (message, channel) => got.resolve({ message, channel }));
    await sub.pSubscribe(k('pch*'), (message, channel) => gotP.resolve({ message, channel }));
    assertEq(await client.publish(ch, 'hello\r\n'), 1, 'PUBLISH receivers');
    assertEq(await got.promise, { message: 'hello\r\n', channel: ch }, 'message');
    assertEq(await client.publish(k('pch1'), 'p'), 1, 'PUBLISH (pattern) receivers');
    assertEq(await gotP.promise, { message: 'p', channel: k('pch1') }, 'pattern message');
    if (expectResp === 3) {
      // RESP3: the subscribed connection still runs ordinary commands.
      assertEq(await sub.ping(), 'PONG', 'PING while subscribed');
      assertEq(await sub.set(k('subset'), 'v'), 'OK', 'SET while subscribed');
      assertEq(await sub.get(k('subset')), 'v', 'GET while subscribed');
    }
    await sub.unsubscribe(ch);
    await sub.pUnsubscribe(k('pch*'));
    // node-redis over RESP2 hands this PONG back as a Buffer; the text is
    // what counts here.
    assertEq(String(await sub.ping()), 'PONG', 'PING after unsubscribe');
    assertEq(await client.publish(ch, 'nobody'), 0, 'PUBLISH after unsubscribe');
  });
  await check(lib, 'blpop', async () => {
    const blocker = await open();
    const pusher = await open();
    const pending = blocker.blPop(k('list'), 10);
    await waitBlocked(() => client.info('clients'));
    assertEq(await client.ping(), 'PONG', 'PING from another client while BLPOP waits');
    assertEq(await pusher.rPush(k('list'), 'item'), 1, 'RPUSH');
    assertEq(await pending, { key: k('list'), element: 'item' }, 'BLPOP');
    assertEq(await blocker.ping(), 'PONG', 'PING on the connection after BLPOP');
  });
  await check(lib, 'expire-ttl', async () => {
    await client.set(k('e'), 'v');
    assertEq(await client.expire(k('e'), 100), 1, 'EXPIRE');
    const ttl = await client.ttl(k('e'));
    assert(ttl > 90 && ttl <= 100, `TTL ${ttl}`);
    assertEq(await client.ttl(k('missing')), -2, 'TTL missing');
  });
  await check(lib, 'client-name', async () => {
    assertEq(await client.clientGetName(), null, 'CLIENT GETNAME (default)');
    const named = await open({ name: `compat-${lib}` });
    assertEq(await named.clientGetName(), `compat-${lib}`, 'CLIENT GETNAME (name option)');
    return 'default=none';
  });
  await check(lib, 'no-client-errors', async () => {
    assert(errors.length === 0, `error events: ${errors.join(' | ')}`);
  });
  await cleanupKeys(client, `cc:${lib}:${RUN}:*`);
  await closeAll(opened);
}

// --------------------------------------------------------------------- ioredis
async function ioredisLib(lib, protocol) {
  const Redis = require('ioredis').default || require('ioredis');
  say(`INFO ${lib} version=${pkgVersion('ioredis')}`);
  const k = (s) => `cc:${lib}:${RUN}:${s}`;
  const opened = [];
  const errors = [];
  const open = async (extra) => {
    // The default form, new Redis(port), plus only what a check adds.
    const c = protocol || extra
      ? new Redis(PORT, HOST, { ...(protocol ? { protocol } : {}), ...(extra || {}) })
      : new Redis(PORT, HOST);
    c.on('error', (e) => errors.push(String(e && e.message)));
    opened.push(c);
    await waitReady(c);
    return c;
  };
  let client;
  const expectResp = protocol || 3; // ioredis 6 defaults to protocol 3
  const ok = await check(lib, 'connect', async () => {
    client = await open();
    const negotiated = client.condition && client.condition.protocol;
    say(`INFO ${lib} negotiated-protocol=${negotiated}`);
    const ci = recordClientInfo(lib, await client.call('CLIENT', 'INFO'));
    assertEq(ci.resp, String(expectResp), 'CLIENT INFO resp');
    assertEq(negotiated, expectResp, 'protocol ioredis settled on');
    return `resp=${ci.resp}`;
  });
  if (!ok) {
    await closeAll(opened);
    return;
  }
  await check(lib, 'ping', async () => assertEq(await client.ping(), 'PONG', 'PING'));
  await check(lib, 'set-get-binary', async () => {
    const v = binaryValue();
    assertEq(await client.set(k('bin'), v), 'OK', 'SET');
    const got = await client.getBuffer(k('bin'));
    assert(Buffer.isBuffer(got) && got.equals(v), `GET returned ${short(got)}`);
    assertEq(await client.get(k('missing')), null, 'GET missing');
  });
  await check(lib, 'hset-hgetall', async () => {
    assertEq(await client.hset(k('h'), { a: '1', b: 'two', 'c\r\n': 'x\0y' }), 3, 'HSET');
    assertEq(await client.hgetall(k('h')), { a: '1', b: 'two', 'c\r\n': 'x\0y' }, 'HGETALL');
    if (expectResp !== 3) return 'reply=array';
    // With replyMapping "resp3" a RESP3 map decodes to a plain object;
    // a flat array would mean the reply was not a map.
    const m = await open({ replyMapping: 'resp3' });
    const raw = await m.call('HGETALL', k('h'));
    assert(raw && !Array.isArray(raw) && typeof raw === 'object', `HGETALL raw reply is not a RESP3 map: ${short(raw)}`);
    return 'reply=map';
  });
  await check(lib, 'multi-exec', async () => {
    const res = await client.multi().set(k('m'), '1').incr(k('m')).get(k('m')).hset(k('mh'), 'f', 'v').hgetall(k('mh')).exec();
    assertEq(res, [[null, 'OK'], [null, 2], [null, '2'], [null, 1], [null, { f: 'v' }]], 'EXEC');
  });
  await check(lib, 'watch-abort', async () => {
    const w = await open();
    const other = await open();
    await w.set(k('w'), '0');
    await w.watch(k('w'));
    await other.set(k('w'), 'changed');
    const res = await w.multi().set(k('w'), 'mine').exec();
    assertEq(res, null, 'EXEC after a conflicting write');
    assertEq(await client.get(k('w')), 'changed', 'value after the aborted transaction');
  });
  await check(lib, 'pipeline-100', async () => {
    const p = client.pipeline();
    for (let i = 0; i < 50; i++) p.set(k(`p${i}`), String(i));
    for (let i = 0; i < 49; i++) p.get(k(`p${i}`));
    p.incr(k('p0'));
    const res = await p.exec();
    assertEq(res.length, 100, 'replies');
    for (let i = 0; i < 50; i++) assertEq(res[i], [null, 'OK'], `reply ${i}`);
    for (let i = 0; i < 49; i++) assertEq(res[50 + i], [null, String(i)], `reply ${50 + i}`);
    assertEq(res[99], [null, 1], 'reply 99');
  });
  await check(lib, 'pubsub', async () => {
    const sub = await open();
    const ch = k('ch');
    const got = new Promise((resolve) => sub.on('message', (channel, message) => resolve({ message, channel })));
    const gotP = new Promise((resolve) => sub.on('pmessage', (pattern, channel, message) => resolve({ pattern, message, channel })));
    assertEq(await sub.subscribe(ch), 1, 'SUBSCRIBE count');
    assertEq(await sub.psubscribe(k('pch*')), 2, 'PSUBSCRIBE count');
    assertEq(await client.publish(ch, 'hello\r\n'), 1, 'PUBLISH receivers');
    assertEq(await got, { message: 'hello\r\n', channel: ch }, 'message');
    assertEq(await client.publish(k('pch1'), 'p'), 1, 'PUBLISH (pattern) receivers');
    assertEq(await gotP, { pattern: k('pch*'), message: 'p', channel: k('pch1') }, 'pattern message');
    await sub.unsubscribe(ch);
    await sub.punsubscribe(k('pch*'));
    assertEq(await sub.ping(), 'PONG', 'PING after unsubscribe');
    assertEq(await client.publish(ch, 'nobody'), 0, 'PUBLISH after unsubscribe');
  });
  await check(lib, 'blpop', async () => {
    const blocker = await open();
    const pusher = await open();
    const pending = blocker.blpop(k('list'), 10);
    await waitBlocked(() => client.info('clients'));
    assertEq(await client.ping(), 'PONG', 'PING from another client while BLPOP waits');
    assertEq(await pusher.rpush(k('list'), 'item'), 1, 'RPUSH');
    assertEq(await pending, [k('list'), 'item'], 'BLPOP');
    assertEq(await blocker.ping(), 'PONG', 'PING on the connection after BLPOP');
  });
  await check(lib, 'expire-ttl', async () => {
    await client.set(k('e'), 'v');
    assertEq(await client.expire(k('e'), 100), 1, 'EXPIRE');
    const ttl = await client.ttl(k('e'));
    assert(ttl > 90 && ttl <= 100, `TTL ${ttl}`);
    assertEq(await client.ttl(k('missing')), -2, 'TTL missing');
  });
  await check(lib, 'client-name', async () => {
    // ioredis sets a name only when connectionName is given.
    assertEq(await client.client('GETNAME'), null, 'CLIENT GETNAME (default)');
    const named = await open({ connectionName: `compat-${lib}` });
    assertEq(await named.client('GETNAME'), `compat-${lib}`, 'CLIENT GETNAME (connectionName)');
    return 'default=none';
  });
  await check(lib, 'no-client-errors', async () => {
    assert(errors.length === 0, `error events: ${errors.join(' | ')}`);
  });
  await cleanupKeys(client, `cc:${lib}:${RUN}:*`);
  await closeAll(opened);
}

function waitReady(c) {
  if (c.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    c.once('ready', resolve);
    c.once('end', () => reject(new Error('connection ended before ready')));
  });
}

// ---------------------------------------------------------------- connect-redis
async function connectRedis(lib) {
  const { createClient } = require('redis');
  const session = require('express-session');
  const { RedisStore } = require('connect-redis');
  say(`INFO ${lib} version=${pkgVersion('connect-redis')} express-session=${pkgVersion('express-session')} redis=${pkgVersion('redis')}`);
  const errors = [];
  const client = createClient({ url: `redis://${HOST}:${PORT}` });
  client.on('error', (e) => errors.push(String(e && e.message)));
  const prefix = `cc:${lib}:${RUN}:sess:`;
  let store;
  const ok = await check(lib, 'connect', async () => {
    await client.connect();
    store = new RedisStore({ client, prefix });
  });
  if (!ok) {
    await closeAll([client]);
    return;
  }
  const sid = crypto.randomBytes(12).toString('hex');
  const cookie = () => new session.Cookie({ maxAge: 60000 });
  const cb = (fn) => new Promise((resolve, reject) => fn((err, data) => (err ? reject(err) : resolve(data))));
  await check(lib, 'store-set-get', async () => {
    await cb((done) => store.set(sid, { cookie: cookie(), user: 'alice', bytes: 'a\r\nb' }, done));
    const sess = await cb((done) => store.get(sid, done));
    assertEq(sess && sess.user, 'alice', 'session user');
    assertEq(sess && sess.bytes, 'a\r\nb', 'session field');
    const ttl = await client.ttl(prefix + sid);
    assert(ttl > 0 && ttl <= 60, `TTL of the session key ${ttl}`);
  });
  await check(lib, 'session-save-reload', async () => {
    // express-session's own path: Store.load builds a Session bound to a
    // request; save() and reload() go through the store.
    const req = { sessionID: sid, sessionStore: store };
    const sess = await cb((done) => store.load(sid, done));
    assert(sess, 'Store.load returned no session');
    req.session = sess;
    const bound = store.createSession(req, sess);
    bound.views = 3;
    await cb((done) => bound.save(done));
    await cb((done) => bound.reload(done));
    assertEq(req.session.views, 3, 'views after save and reload');
  });
  await check(lib, 'store-touch', async () => {
    await client.expire(prefix + sid, 5);
    await cb((done) => store.touch(sid, { cookie: cookie() }, done));
    const ttl = await client.ttl(prefix + sid);
    assert(ttl > 5 && ttl <= 60, `TTL after touch ${ttl}`);
  });
  await check(lib, 'store-length-ids', async () => {
    const sid2 = sid + 'b';
    await cb((done) => store.set(sid2, { cookie: cookie(), user: 'bob' }, done));
    assertEq(await cb((done) => store.length(done)), 2, 'length');
    const ids = await cb((done) => store.ids(done));
    assertEq([...ids].sort(), [sid, sid2].sort(), 'ids');
    const all = await cb((done) => store.all(done));
    assertEq(all.length, 2, 'all');
  });
  await check(lib, 'store-destroy', async () => {
    await cb((done) => store.destroy(sid, done));
    assertEq(await cb((done) => store.get(sid, done)), null, 'get after destroy');
    await cb((done) => store.clear(done));
    assertEq(await cb((done) => store.length(done)), 0, 'length after clear');
  });
  await check(lib, 'no-client-errors', async () => {
    assert(errors.length === 0, `error events: ${errors.join(' | ')}`);
  });
  await closeAll([client]);
}

// --------------------------------------------------------------------- helpers
function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

async function cleanupKeys(client, pattern) {
  try {
    const keys = typeof client.keys === 'function' ? await client.keys(pattern) : [];
    if (keys.length) await client.del(keys);
  } catch (_) { /* best effort */ }
}

async function closeAll(clients) {
  for (const c of clients) {
    try {
      if (typeof c.quit === 'function' && c.constructor && c.constructor.name === 'Redis') c.disconnect();
      else if (typeof c.destroy === 'function') c.destroy();
      else if (typeof c.disconnect === 'function') await c.disconnect();
    } catch (_) { /* already closed */ }
  }
}

const LIBS = {
  'node-redis': () => nodeRedis('node-redis', null),
  'node-redis-resp2': () => nodeRedis('node-redis-resp2', 2),
  ioredis: () => ioredisLib('ioredis', null),
  'ioredis-resp2': () => ioredisLib('ioredis-resp2', 2),
  'connect-redis': () => connectRedis('connect-redis'),
};

async function main() {
  const wanted = ONLY ? ONLY.split(',') : Object.keys(LIBS);
  for (const name of wanted) {
    if (!LIBS[name]) {
      say(`FAIL ${name} setup unknown library`);
      failures++;
      continue;
    }
    try {
      await LIBS[name]();
    } catch (e) {
      failures++;
      say(`FAIL ${name} setup ${String((e && e.message) || e).replace(/\s+/g, ' ')}`);
    }
  }
  process.exit(failures ? 1 : 0);
}

main();
