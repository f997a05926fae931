// The browser provider module driven through a fake websocket, as the gateway would drive it.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Errno, NO_HANDLE, RESPONSE, Type, decodeResponse, encodeRequest } from '../../web/webfuse2.js';
import {
  Coverage, WebfuseProvider, uniqueNames, validEntryName, validFilesystemName,
} from '../../web/webfuse-provider.js';

const O_RDONLY_LARGEFILE = 0o100000;

// Stands in for a browser WebSocket; the test plays the gateway.
class FakeSocket {
  constructor(url, protocol) {
    this.url = url;
    this.protocol = protocol;
    this.answers = [];
    this.closedWith = null;
    this.waiters = [];
  }

  send(bytes) {
    assert.ok(bytes instanceof Uint8Array, 'answers are binary');
    this.answers.push(decodeResponse(bytes));
    for (const w of this.waiters.splice(0)) w();
  }

  close(code, reason) {
    this.closedWith = { code, reason };
    queueMicrotask(() => this.onclose({ code, reason, wasClean: true }));
  }

  open() {
    this.onopen({});
  }

  // The gateway closes: a detach or a lost connection.
  drop(code, reason) {
    this.onclose({ code, reason, wasClean: code !== 1006 });
  }

  request(msg) {
    const bytes = encodeRequest(msg);
    this.onmessage({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) });
  }

  raw(bytes) {
    this.onmessage({ data: Uint8Array.from(bytes).buffer });
  }

  async answer(id, timeoutMs = 2000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.answers.find((a) => a.id === id);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no answer to request ${id}`);
      await new Promise((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 20);
      });
    }
  }

  async ask(msg) {
    this.request(msg);
    return this.answer(msg.id);
  }
}

function memoryFile(name, text, mtime = 1700000000123) {
  const bytes = typeof text === 'string' ? new TextEncoder().encode(text) : text;
  return {
    name,
    size: bytes.length,
    mtime,
    read: async (offset, length) => bytes.slice(offset, offset + length),
  };
}

function connected(files, options = {}) {
  let socket = null;
  const provider = new WebfuseProvider({
    url: 'ws://device:8081/upload',
    files,
    createSocket: (url, protocol) => (socket = new FakeSocket(url, protocol)),
    ...options,
  });
  provider.connect();
  socket.open();
  return { provider, socket };
}

let nextId = 1;
const id = () => nextId++;

async function openFile(socket, path, flags = O_RDONLY_LARGEFILE) {
  const a = await socket.ask({ id: id(), type: Type.OPEN, path, flags });
  assert.equal(a.result, 0, `open ${path}`);
  return a.handle;
}

const text = (data) => new TextDecoder().decode(data);

test('connects to the URL with the webfuse2 subprotocol and binary frames', () => {
  const { provider, socket } = connected([memoryFile('a.txt', 'abc')]);
  assert.equal(socket.url, 'ws://device:8081/upload');
  assert.equal(socket.protocol, 'webfuse2');
  assert.equal(socket.binaryType, 'arraybuffer');
  assert.equal(provider.state, 'open');
});

test('getattr of the root, a file, and missing paths', async () => {
  const { socket } = connected([memoryFile('a.txt', 'hello'), memoryFile('b.bin', new Uint8Array(1025))]);
  const root = await socket.ask({ id: id(), type: Type.GETATTR, path: '/' });
  assert.equal(root.type, Type.GETATTR | RESPONSE);
  assert.equal(root.result, 0);
  assert.equal(root.attributes.mode, 0o40555);
  const file = await socket.ask({ id: id(), type: Type.GETATTR, path: '/b.bin' });
  assert.equal(file.result, 0);
  assert.equal(file.attributes.mode, 0o100444);
  assert.equal(file.attributes.size, 1025n);
  assert.equal(file.attributes.blocks, 3n);
  assert.deepEqual(file.attributes.mtime, { sec: 1700000000n, nsec: 123000000 });
  const other = await socket.ask({ id: id(), type: Type.GETATTR, path: '/a.txt' });
  assert.notEqual(other.attributes.inode, file.attributes.inode);
  for (const path of ['/nope', '/a.txt/x', 'a.txt', '//a.txt']) {
    const a = await socket.ask({ id: id(), type: Type.GETATTR, path });
    assert.equal(a.result, -Errno.ENOENT, path);
  }
});

test('readdir lists every file once, without . and ..', async () => {
  const { socket } = connected([memoryFile('one', '1'), memoryFile('two', '22'), memoryFile('three', '')]);
  const a = await socket.ask({ id: id(), type: Type.READDIR, path: '/' });
  assert.equal(a.result, 0);
  assert.deepEqual(a.names, ['one', 'two', 'three']);
  assert.equal((await socket.ask({ id: id(), type: Type.READDIR, path: '/one' })).result, -Errno.ENOTDIR);
  assert.equal((await socket.ask({ id: id(), type: Type.READDIR, path: '/x' })).result, -Errno.ENOENT);
});

test('readdirplus pages the files with their attributes, as getattr gives them', async () => {
  const files = ['a', 'b', 'c', 'd', 'e'].map((n, i) => memoryFile(n, 'x'.repeat(i)));
  const { socket } = connected(files);
  const seen = [];
  let cookie = 0n;
  let pages = 0;
  do {
    const a = await socket.ask({ id: id(), type: Type.READDIRPLUS, path: '/', cookie, maxEntries: 2 });
    assert.equal(a.result, 0);
    assert.ok(a.entries.length >= 1 && a.entries.length <= 2);
    for (const e of a.entries) {
      const g = await socket.ask({ id: id(), type: Type.GETATTR, path: `/${e.name}` });
      assert.deepEqual(e.attributes, g.attributes, e.name);
      seen.push(e.name);
    }
    cookie = a.cookie;
    pages += 1;
  } while (cookie !== 0n);
  assert.deepEqual(seen, ['a', 'b', 'c', 'd', 'e']);
  assert.equal(pages, 3);
  const none = await socket.ask({ id: id(), type: Type.READDIRPLUS, path: '/', cookie: 0n, maxEntries: 0 });
  assert.equal(none.result, -Errno.EINVAL);
  const file = await socket.ask({ id: id(), type: Type.READDIRPLUS, path: '/a', cookie: 0n, maxEntries: 9 });
  assert.equal(file.result, -Errno.ENOTDIR);
});

test('readdirplus of an empty list is one empty last page', async () => {
  const { socket } = connected([]);
  const a = await socket.ask({ id: id(), type: Type.READDIRPLUS, path: '/', cookie: 0n, maxEntries: 64 });
  assert.deepEqual([a.result, a.cookie, a.entries], [0, 0n, []]);
});

test('open, read in pieces, read past the end, release', async () => {
  const { provider, socket } = connected([memoryFile('f', 'abcdefghij')]);
  const handle = await openFile(socket, '/f');
  assert.equal(provider.openFiles, 1);
  const first = await socket.ask({ id: id(), type: Type.READ, path: '/f', size: 4, offset: 0n, handle });
  assert.equal(first.result, 4);
  assert.equal(text(first.data), 'abcd');
  const tail = await socket.ask({ id: id(), type: Type.READ, path: '/f', size: 4096, offset: 8n, handle });
  assert.equal(tail.result, 2);
  assert.equal(text(tail.data), 'ij');
  const eof = await socket.ask({ id: id(), type: Type.READ, path: '/f', size: 10, offset: 10n, handle });
  assert.deepEqual(eof, { id: eof.id, type: Type.READ | RESPONSE, result: 0 });
  const far = await socket.ask({ id: id(), type: Type.READ, path: '/f', size: 10, offset: 1n << 62n, handle });
  assert.equal(far.result, 0);
  assert.equal((await socket.ask({ id: id(), type: Type.RELEASE, path: '/f', handle })).result, 0);
  assert.equal(provider.openFiles, 0);
  assert.equal((await socket.ask({ id: id(), type: Type.RELEASE, path: '/f', handle })).result, -Errno.EBADF);
  const stale = await socket.ask({ id: id(), type: Type.READ, path: '/f', size: 1, offset: 0n, handle });
  assert.equal(stale.result, -Errno.EBADF);
});

test('a read without a handle finds the file by path', async () => {
  const { socket } = connected([memoryFile('f', 'xyz')]);
  const a = await socket.ask({ id: id(), type: Type.READ, path: '/f', size: 8, offset: 1n, handle: NO_HANDLE });
  assert.equal(text(a.data), 'yz');
  const missing = await socket.ask({ id: id(), type: Type.READ, path: '/g', size: 8, offset: 0n, handle: NO_HANDLE });
  assert.equal(missing.result, -Errno.ENOENT);
});

test('opening for writing and every changing request fail with EROFS', async () => {
  const { socket } = connected([memoryFile('f', 'data')]);
  for (const flags of [0o1, 0o2, 0o1000 | O_RDONLY_LARGEFILE, 0o100]) {
    const a = await socket.ask({ id: id(), type: Type.OPEN, path: '/f', flags });
    assert.equal(a.result, -Errno.EROFS, `open flags ${flags.toString(8)}`);
  }
  const t = { sec: 1n, nsec: 0 };
  const changes = [
    { type: Type.SYMLINK, target: '/f', linkpath: '/l' },
    { type: Type.LINK, oldPath: '/f', newPath: '/g' },
    { type: Type.RENAME, oldPath: '/f', newPath: '/g', flags: 0 },
    { type: Type.CHMOD, path: '/f', mode: 0o100600 },
    { type: Type.CHOWN, path: '/f', uid: 1, gid: 1 },
    { type: Type.TRUNCATE, path: '/f', size: 0n, handle: NO_HANDLE },
    { type: Type.MKNOD, path: '/p', mode: 0o10644, rdev: 0n },
    { type: Type.CREATE, path: '/n', mode: 0o100644 },
    { type: Type.UNLINK, path: '/f' },
    { type: Type.WRITE, path: '/f', data: new Uint8Array([1]), offset: 0n, handle: NO_HANDLE },
    { type: Type.MKDIR, path: '/d', mode: 0o755 },
    { type: Type.RMDIR, path: '/d' },
    { type: Type.UTIMENS, path: '/f', atime: t, mtime: t, handle: NO_HANDLE },
  ];
  for (const change of changes) {
    const a = await socket.ask({ id: id(), ...change });
    assert.equal(a.type, change.type | RESPONSE);
    assert.equal(a.result, -Errno.EROFS, `type 0x${change.type.toString(16)}`);
  }
  const still = await socket.ask({ id: id(), type: Type.GETATTR, path: '/f' });
  assert.equal(still.attributes.size, 4n);
});

test('access, readlink, statfs, fsync and getcreds', async () => {
  const { socket } = connected([memoryFile('f', 'x'.repeat(5000)), memoryFile('g', 'y')], { token: 's3cret' });
  const access = async (path, mode) => (await socket.ask({ id: id(), type: Type.ACCESS, path, mode })).result;
  assert.equal(await access('/f', 4), 0);
  assert.equal(await access('/f', 0), 0);
  assert.equal(await access('/f', 2), -Errno.EROFS);
  assert.equal(await access('/f', 1), -Errno.EACCES);
  assert.equal(await access('/', 5), 0);
  assert.equal(await access('/zz', 0), -Errno.ENOENT);
  assert.equal((await socket.ask({ id: id(), type: Type.READLINK, path: '/f' })).result, -Errno.EINVAL);
  assert.equal((await socket.ask({ id: id(), type: Type.READLINK, path: '/zz' })).result, -Errno.ENOENT);
  const st = await socket.ask({ id: id(), type: Type.STATFS, path: '/' });
  assert.equal(st.result, 0);
  assert.equal(st.statistics.blocks, 2n);
  assert.equal(st.statistics.bfree, 0n);
  assert.equal(st.statistics.files, 3n);
  assert.equal(st.statistics.namemax, 255n);
  const sync = await socket.ask({ id: id(), type: Type.FSYNC, path: '/f', datasync: true, handle: NO_HANDLE });
  assert.equal(sync.result, 0);
  const creds = await socket.ask({ id: id(), type: Type.GETCREDS });
  assert.deepEqual(creds, { id: creds.id, type: Type.GETCREDS | RESPONSE, credentials: 's3cret' });
});

test('an unknown request type gets the bare 0x80 answer with its id', async () => {
  const { socket } = connected([memoryFile('f', 'x')]);
  socket.raw([0, 0, 0, 0x23, 0x42, 1, 2, 3]);
  assert.deepEqual(await socket.answer(0x23), { id: 0x23, type: 0x80 });
});

test('malformed requests: EINVAL when there is an id, nothing otherwise', async () => {
  const { provider, socket } = connected([memoryFile('f', 'x')]);
  const errors = [];
  provider.on('error', (e) => errors.push(e.message));
  socket.raw([0, 0, 0, 0x30, Type.GETATTR, 0, 0, 0, 9, 0x2f]);
  assert.deepEqual(await socket.answer(0x30), { id: 0x30, type: Type.GETATTR | RESPONSE, result: -Errno.EINVAL });
  socket.raw([0, 0, 1]);
  socket.onmessage({ data: 'text frame' });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(socket.answers.length, 1);
  assert.equal(errors.length, 3);
});

test('reads are answered as their data arrives, not in request order', async () => {
  const gates = [];
  const slow = {
    name: 'slow', size: 100, mtime: 0,
    read: (offset, length) => new Promise((resolve) => gates.push(() => resolve(new Uint8Array(length).fill(offset)))),
  };
  const { socket } = connected([slow]);
  const handle = await openFile(socket, '/slow');
  const first = id();
  const second = id();
  socket.request({ id: first, type: Type.READ, path: '/slow', size: 10, offset: 0n, handle });
  socket.request({ id: second, type: Type.READ, path: '/slow', size: 10, offset: 50n, handle });
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(gates.length, 2);
  gates[1]();
  const b = await socket.answer(second);
  assert.equal(b.data[0], 50);
  assert.equal(socket.answers.some((a) => a.id === first), false);
  gates[0]();
  const a = await socket.answer(first);
  assert.equal(a.data[0], 0);
  assert.deepEqual(socket.answers.slice(-2).map((x) => x.id), [second, first]);
});

test('a failing read answers EIO, a too long one is cut to the request', async () => {
  const files = [
    { name: 'bad', size: 10, read: async () => { throw new Error('disk gone'); } },
    { name: 'long', size: 10, read: async () => new ArrayBuffer(64) },
  ];
  const { socket } = connected(files);
  const bad = await openFile(socket, '/bad');
  const a = await socket.ask({ id: id(), type: Type.READ, path: '/bad', size: 4, offset: 0n, handle: bad });
  assert.equal(a.result, -Errno.EIO);
  const long = await openFile(socket, '/long');
  const b = await socket.ask({ id: id(), type: Type.READ, path: '/long', size: 4, offset: 0n, handle: long });
  assert.equal(b.result, 4);
  assert.equal(b.data.length, 4);
});

test('a read asking more than 1 MiB gets 1 MiB: the tab never holds more for one request', async () => {
  let asked = 0;
  const files = [{ name: 'big', size: 8 * 1024 * 1024,
    read: async (offset, length) => { asked = length; return new ArrayBuffer(length); } }];
  const { socket } = connected(files);
  const handle = await openFile(socket, '/big');
  const a = await socket.ask({ id: id(), type: Type.READ, path: '/big', size: 0xffffffff, offset: 0n,
    handle });
  assert.equal(asked, 1024 * 1024);
  assert.equal(a.result, 1024 * 1024);
  assert.equal(a.data.length, 1024 * 1024);
});

test('read events count bytes served and bytes covered per file', async () => {
  const { provider, socket } = connected([memoryFile('a', 'x'.repeat(100)), memoryFile('b', 'y')]);
  const events = [];
  provider.on('read', (e) => events.push(e));
  const handle = await openFile(socket, '/a');
  for (const [offset, size] of [[0, 40], [20, 40], [0, 10], [90, 50]]) {
    await socket.ask({ id: id(), type: Type.READ, path: '/a', size, offset: BigInt(offset), handle });
  }
  assert.deepEqual(events.map((e) => [e.name, e.offset, e.length, e.served, e.covered]), [
    ['a', 0, 40, 40, 40], ['a', 20, 40, 80, 60], ['a', 0, 10, 90, 60], ['a', 90, 10, 100, 70],
  ]);
  assert.deepEqual(provider.files, [
    { name: 'a', size: 100, served: 100, covered: 70, reads: 4 },
    { name: 'b', size: 1, served: 0, covered: 0, reads: 0 },
  ]);
});

test('scattered reads keep at most 4096 ranges: the closest two merge, the gap counts as unread', () => {
  const c = new Coverage();
  for (let i = 0; i < Coverage.MAX_RANGES; i++) c.add(i * 10, i * 10 + 1); // gaps of 9
  const last = (Coverage.MAX_RANGES - 1) * 10;
  c.add(last + 3, last + 4); // a gap of 2 after the last range: the closest pair
  assert.equal(c.rangeCount, Coverage.MAX_RANGES);
  assert.equal(c.total, Coverage.MAX_RANGES + 1);
  assert.equal(c.add(last + 1, last + 3), Coverage.MAX_RANGES + 1, 'the merged gap counts no more');
  assert.equal(c.add(5, 6), Coverage.MAX_RANGES + 2, 'another gap was kept apart');
});

test('too many open files: EMFILE', async () => {
  const { socket } = connected([memoryFile('f', 'x')], { maxOpenFiles: 2 });
  await openFile(socket, '/f');
  await openFile(socket, '/f');
  const a = await socket.ask({ id: id(), type: Type.OPEN, path: '/f', flags: 0 });
  assert.equal(a.result, -Errno.EMFILE);
});

test('detaching closes with 1000 and the reason; answers after the close are not sent', async () => {
  let release;
  const file = { name: 'f', size: 10, read: () => new Promise((r) => { release = () => r(new Uint8Array(10)); }) };
  const { provider, socket } = connected([file]);
  const closes = [];
  provider.on('close', (e) => closes.push(e));
  const handle = await openFile(socket, '/f');
  socket.request({ id: 999, type: Type.READ, path: '/f', size: 10, offset: 0n, handle });
  await new Promise((r) => setTimeout(r, 10));
  provider.close();
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(socket.closedWith, { code: 1000, reason: 'detached by the user' });
  assert.equal(provider.state, 'closed');
  assert.equal(closes.length, 1);
  assert.equal(closes[0].byUser, true);
  assert.equal(closes[0].wasOpen, true);
  release();
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(socket.answers.some((a) => a.id === 999), false);
});

// A file whose reads finish only when the test says so.
function heldFile(name, size) {
  const pending = [];
  return {
    pending,
    file: { name, size, read: (offset, length) => new Promise((resolve) => pending.push(() => resolve(new Uint8Array(length)))) },
  };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

test('at most 32 reads run at once; the others wait their turn and are all answered', async () => {
  const held = heldFile('f', 1 << 20);
  const { socket } = connected([held.file]);
  const handle = await openFile(socket, '/f');
  const ids = [];
  for (let i = 0; i < 100; i++) {
    ids.push(id());
    socket.request({ id: ids[i], type: Type.READ, path: '/f', size: 16, offset: BigInt(i * 16), handle });
  }
  await tick();
  assert.equal(held.pending.length, 32);
  while (held.pending.length > 0) {
    held.pending.splice(0).forEach((release) => release());
    await tick();
  }
  for (const i of ids) assert.equal((await socket.answer(i)).result, 16);
});

test('no read starts while 8 MiB of answers wait to be sent; it starts once they left', async () => {
  const held = heldFile('f', 64);
  const { socket } = connected([held.file]);
  const handle = await openFile(socket, '/f');
  socket.bufferedAmount = 9 * 1024 * 1024;
  socket.request({ id: id(), type: Type.READ, path: '/f', size: 8, offset: 0n, handle });
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(held.pending.length, 0, 'a read started with the send buffer full');
  socket.bufferedAmount = 0;
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(held.pending.length, 1);
});

test('a gateway that asks for more than it reads is closed with 1008, and the page says why', async () => {
  const held = heldFile('f', 1 << 20);
  const { provider, socket } = connected([held.file]);
  const closes = [];
  provider.on('close', (e) => closes.push(e));
  const handle = await openFile(socket, '/f');
  for (let i = 0; i < 32 + 4096; i++) {
    socket.request({ id: id(), type: Type.READ, path: '/f', size: 1, offset: 0n, handle });
  }
  assert.equal(socket.closedWith, null, 'closed before the bound');
  socket.request({ id: id(), type: Type.READ, path: '/f', size: 1, offset: 0n, handle });
  assert.deepEqual(socket.closedWith, { code: 1008, reason: 'too many reads waiting' });
  await tick();
  assert.equal(closes[0].localReason, 'too many reads waiting');
  assert.equal(closes[0].byUser, false);
  // Unread answers past 64 MiB: the same, for any request.
  const again = connected([memoryFile('g', 'x')]);
  again.socket.bufferedAmount = 65 * 1024 * 1024;
  again.socket.request({ id: id(), type: Type.GETATTR, path: '/g' });
  assert.deepEqual(again.socket.closedWith, { code: 1008, reason: 'the gateway does not read the answers' });
});

test('detaching says closing until the gateway answers; one that never does is given up', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { provider, socket } = connected([memoryFile('f', 'x')]);
  socket.close = (code, reason) => { socket.closedWith = { code, reason }; }; // never answers
  const closes = [];
  provider.on('close', (e) => closes.push(e));
  provider.close();
  assert.equal(provider.state, 'closing');
  provider.close(); // a second click does nothing
  t.mock.timers.tick(2999);
  assert.equal(closes.length, 0);
  t.mock.timers.tick(1);
  assert.equal(provider.state, 'closed');
  assert.equal(closes.length, 1);
  assert.equal(closes[0].byUser, true);
  assert.equal(closes[0].code, 1006);
  assert.equal(closes[0].wasClean, false);
});

test('reads still running when a connection ends do not hold back the next one', async () => {
  const held = heldFile('f', 1 << 20);
  const sockets = [];
  const provider = new WebfuseProvider({
    url: 'ws://device/x', files: [held.file],
    createSocket: (u, p) => { const s = new FakeSocket(u, p); sockets.push(s); return s; },
  });
  provider.connect();
  sockets[0].open();
  const old = await openFile(sockets[0], '/f');
  for (let i = 0; i < 40; i++) {
    sockets[0].request({ id: id(), type: Type.READ, path: '/f', size: 1, offset: 0n, handle: old });
  }
  await tick();
  assert.equal(held.pending.length, 32);
  sockets[0].drop(1006, '');
  provider.connect();
  sockets[1].open();
  const handle = await openFile(sockets[1], '/f');
  const fresh = id();
  sockets[1].request({ id: fresh, type: Type.READ, path: '/f', size: 1, offset: 0n, handle });
  await tick();
  held.pending.splice(0).forEach((release) => release()); // the old ones end, and the new one
  await tick();
  held.pending.splice(0).forEach((release) => release());
  assert.equal((await sockets[1].answer(fresh)).result, 1);
  assert.equal(sockets[1].answers.filter((a) => a.type === (Type.READ | RESPONSE)).length, 1);
  assert.equal(sockets[0].answers.filter((a) => a.type === (Type.READ | RESPONSE)).length, 0);
});

test('after Detach no waiting read starts; a close that comes stops the give-up timer', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const held = heldFile('f', 1 << 20);
  const { provider, socket } = connected([held.file]);
  socket.close = (code, reason) => { socket.closedWith = { code, reason }; };
  const closes = [];
  provider.on('close', (e) => closes.push(e));
  socket.request({ id: id(), type: Type.OPEN, path: '/f', flags: O_RDONLY_LARGEFILE });
  for (let i = 0; i < 3; i++) await Promise.resolve();
  const handle = socket.answers[0].handle;
  for (let i = 0; i < 40; i++) {
    socket.request({ id: id(), type: Type.READ, path: '/f', size: 1, offset: 0n, handle });
  }
  for (let i = 0; i < 10; i++) await Promise.resolve();
  assert.equal(held.pending.length, 32);
  provider.close();
  held.pending.splice(0).forEach((release) => release());
  for (let i = 0; i < 10; i++) await Promise.resolve();
  assert.equal(held.pending.length, 0, 'a waiting read started while detaching');
  socket.drop(1000, 'detached by the user'); // the gateway answers the close
  assert.equal(closes.length, 1);
  t.mock.timers.tick(5000);
  assert.equal(closes.length, 1, 'the give-up timer fired after the close');
  assert.equal(socket.answers.filter((a) => a.type === (Type.READ | RESPONSE)).length, 0);
  assert.equal(provider.files[0].served, 0, 'reads that ended after Detach were counted');
});

test('a chosen file the browser can no longer read: EIO to the device, readerror to the page', async () => {
  const files = [{ name: 'moved', size: 10, read: async () => { throw new Error('NotReadableError'); } }];
  const { provider, socket } = connected(files);
  const errors = [];
  provider.on('readerror', (e) => errors.push(e));
  const handle = await openFile(socket, '/moved');
  const a = await socket.ask({ id: id(), type: Type.READ, path: '/moved', size: 4, offset: 0n, handle });
  assert.equal(a.result, -Errno.EIO);
  assert.deepEqual(errors, [{ index: 0, name: 'moved', message: 'NotReadableError' }]);
});

test('a close by the gateway reports its code and reason', () => {
  const { provider, socket } = connected([memoryFile('f', 'x')]);
  const closes = [];
  provider.on('close', (e) => closes.push(e));
  socket.drop(1000, 'update done');
  assert.deepEqual(closes, [{ code: 1000, reason: 'update done', wasClean: true, wasOpen: true, byUser: false,
    localReason: '' }]);
});

test('a connection that never opens reports wasOpen false; connect works again after a close', () => {
  const sockets = [];
  const provider = new WebfuseProvider({
    url: 'ws://nowhere/x', files: [memoryFile('f', 'x')],
    createSocket: (u, p) => { const s = new FakeSocket(u, p); sockets.push(s); return s; },
  });
  const closes = [];
  provider.on('close', (e) => closes.push(e));
  provider.connect();
  assert.throws(() => provider.connect(), /already connected/);
  sockets[0].drop(1006, '');
  assert.equal(closes[0].wasOpen, false);
  provider.connect();
  sockets[1].open();
  assert.equal(provider.state, 'open');
  assert.equal(sockets.length, 2);
});

test('the constructor refuses bad file lists', () => {
  const ok = memoryFile('f', 'x');
  const make = (files) => new WebfuseProvider({ url: 'ws://h/x', files, createSocket: () => null });
  assert.throws(() => make([ok, ok]), /twice/);
  assert.throws(() => make([{ ...ok, name: 'a/b' }]), TypeError);
  assert.throws(() => make([{ ...ok, name: '..' }]), TypeError);
  assert.throws(() => make([{ ...ok, size: -1 }]), TypeError);
  assert.throws(() => make([{ ...ok, read: undefined }]), TypeError);
  assert.throws(() => new WebfuseProvider({ files: [ok] }), TypeError);
});

test('filesystem names follow the gateway rule', () => {
  for (const name of ['upload', 'a', 'Firmware-1.2_rc', 'x'.repeat(64), '...']) {
    assert.equal(validFilesystemName(name), true, name);
  }
  for (const name of ['', '.', '..', 'x'.repeat(65), 'a/b', 'ä', 'a b', undefined]) {
    assert.equal(validFilesystemName(name), false, String(name));
  }
});

test('entry names and duplicates', () => {
  assert.equal(validEntryName('a b ä.bin'), true);
  assert.equal(validEntryName('x'.repeat(256)), false);
  assert.equal(validEntryName('ä'.repeat(128)), false);
  assert.deepEqual(uniqueNames(['a.bin', 'a.bin', 'b', 'b', 'a.bin']),
    ['a.bin', 'a (2).bin', 'b', 'b (2)', 'a (3).bin']);
});

test('names longer than 255 bytes are cut, keeping the extension and telling twins apart', () => {
  const long = `${'ü'.repeat(200)}.squashfs`; // 400 bytes of stem: fine elsewhere, too long here
  const names = uniqueNames([long, long, 'x'.repeat(300)]);
  for (const n of names) assert.equal(validEntryName(n), true, n);
  assert.ok(names[0].endsWith('ü.squashfs'));
  assert.ok(names[1].endsWith('ü (2).squashfs'));
  assert.notEqual(names[0], names[1]);
  assert.equal(names[2], 'x'.repeat(255));
});

test('coverage merges overlapping and touching ranges', () => {
  const c = new Coverage();
  assert.equal(c.add(10, 20), 10);
  assert.equal(c.add(30, 40), 20);
  assert.equal(c.add(20, 30), 30);
  assert.equal(c.rangeCount, 1);
  assert.equal(c.add(0, 5), 35);
  assert.equal(c.add(3, 100), 100);
  assert.equal(c.rangeCount, 1);
  assert.equal(c.add(50, 50), 100);
});
