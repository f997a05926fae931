// The webfuse2 codec of the browser provider against the test vectors of the protocol document.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  NO_HANDLE, RESPONSE, Type, WireError,
  decodeRequest, decodeResponse, encodeRequest, encodeResponse,
} from '../../web/webfuse2.js';

function hex(text) {
  const clean = text.replace(/\s+/g, '');
  return Uint8Array.from(clean.match(/../g), (b) => parseInt(b, 16));
}

function ascii(text) {
  return new TextEncoder().encode(text);
}

const T = { sec: 1700000000n, nsec: 5 };

// [what, request bytes, request, response bytes, response]
const vectors = [
  ['getattr /',
    '00000001 02 00000001 2f',
    { id: 1, type: Type.GETATTR, path: '/' },
    `00000001 82 00000000
     0000000000000001 0000000000000002 000041ed 000003e8 000003e8 0000000000000000
     0000000000001000 0000000000000008
     000000006553f100 00000005  000000006553f100 00000005  000000006553f100 00000005`,
    { id: 1, type: 0x82, result: 0,
      attributes: { inode: 1n, nlink: 2n, mode: 0o40755, uid: 1000, gid: 1000, rdev: 0n,
        size: 4096n, blocks: 8n, atime: T, mtime: T, ctime: T } }],
  ['getattr error',
    '00000001 02 00000001 2f',
    { id: 1, type: Type.GETATTR, path: '/' },
    '00000001 82 fffffffe',
    { id: 1, type: 0x82, result: -2 }],
  ['readdir /d',
    '00000002 13 00000002 2f64',
    { id: 2, type: Type.READDIR, path: '/d' },
    '00000002 93 00000000 00000002 00000001 61 00000002 6263',
    { id: 2, type: 0x93, result: 0, names: ['a', 'bc'] }],
  ['open /f',
    '00000003 0b 00000002 2f66 00008000',
    { id: 3, type: Type.OPEN, path: '/f', flags: 0o100000 },
    '00000003 8b 00000000 0000000000000007',
    { id: 3, type: 0x8b, result: 0, handle: 7n }],
  ['read /f',
    '00000004 10 00000002 2f66 00001000 0000000000000000 0000000000000007',
    { id: 4, type: Type.READ, path: '/f', size: 4096, offset: 0n, handle: 7n },
    '00000004 90 00000003 00000003 616263',
    { id: 4, type: 0x90, result: 3, data: ascii('abc') }],
  ['write /f',
    '00000005 11 00000002 2f66 00000002 7879 000000000000000a 0000000000000007',
    { id: 5, type: Type.WRITE, path: '/f', data: ascii('xy'), offset: 10n, handle: 7n },
    '00000005 91 00000002',
    { id: 5, type: 0x91, result: 2 }],
  ['create /n',
    '00000006 0d 00000002 2f6e 000081a4',
    { id: 6, type: Type.CREATE, path: '/n', mode: 0o100644 },
    '00000006 8d 00000000 0000000000000009',
    { id: 6, type: 0x8d, result: 0, handle: 9n }],
  ['statfs /',
    '00000007 15 00000001 2f',
    { id: 7, type: Type.STATFS, path: '/' },
    `00000007 95 00000000 0000000000001000 0000000000001000 00000000000003e8 00000000000001f4
     0000000000000190 0000000000000064 0000000000000032 00000000000000ff`,
    { id: 7, type: 0x95, result: 0,
      statistics: { bsize: 4096n, frsize: 4096n, blocks: 1000n, bfree: 500n, bavail: 400n,
        files: 100n, ffree: 50n, namemax: 255n } }],
  ['utimens /f',
    `00000008 16 00000002 2f66 0000000000000001 00000002 0000000000000003 00000004
     ffffffffffffffff`,
    { id: 8, type: Type.UTIMENS, path: '/f', atime: { sec: 1n, nsec: 2 },
      mtime: { sec: 3n, nsec: 4 }, handle: NO_HANDLE },
    '00000008 96 00000000',
    { id: 8, type: 0x96, result: 0 }],
  ['rename /a /b',
    '00000009 06 00000002 2f61 00000002 2f62 01',
    { id: 9, type: Type.RENAME, oldPath: '/a', newPath: '/b', flags: 1 },
    '00000009 86 ffffffef',
    { id: 9, type: 0x86, result: -17 }],
  ['getcreds',
    '0000000a 17',
    { id: 10, type: Type.GETCREDS },
    '0000000a 97 00000006 736563726574',
    { id: 10, type: 0x97, credentials: 'secret' }],
  // The readdirplus extension: a first page that says where to go on, then the last one.
  ['readdirplus /d, first page',
    '0000000b 18 00000002 2f64 0000000000000000 00000001',
    { id: 11, type: Type.READDIRPLUS, path: '/d', cookie: 0n, maxEntries: 1 },
    `0000000b 98 00000000 0000000100000002 00000001 00000001 61
     0000000000000005 0000000000000001 000081a4 000003e8 000003e8 0000000000000000
     0000000000000003 0000000000000008
     000000006553f100 00000005  000000006553f100 00000005  000000006553f100 00000005`,
    { id: 11, type: 0x98, result: 0, cookie: 0x100000002n,
      entries: [{ name: 'a', attributes: { inode: 5n, nlink: 1n, mode: 0o100644, uid: 1000,
        gid: 1000, rdev: 0n, size: 3n, blocks: 8n, atime: T, mtime: T, ctime: T } }] }],
  ['readdirplus /d, last page',
    '0000000c 18 00000002 2f64 0000000100000002 00000001',
    { id: 12, type: Type.READDIRPLUS, path: '/d', cookie: 0x100000002n, maxEntries: 1 },
    `0000000c 98 00000000 0000000000000000 00000001 00000002 6263
     0000000000000006 0000000000000002 000041ed 000003e8 000003e8 0000000000000000
     0000000000001000 0000000000000008
     000000006553f100 00000005  000000006553f100 00000005  000000006553f100 00000005`,
    { id: 12, type: 0x98, result: 0, cookie: 0n,
      entries: [{ name: 'bc', attributes: { inode: 6n, nlink: 2n, mode: 0o40755, uid: 1000,
        gid: 1000, rdev: 0n, size: 4096n, blocks: 8n, atime: T, mtime: T, ctime: T } }] }],
];

for (const [what, reqHex, request, respHex, response] of vectors) {
  test(`vector ${what}: request decodes and encodes`, () => {
    assert.deepEqual(decodeRequest(hex(reqHex)), request);
    assert.deepEqual(encodeRequest(request), hex(reqHex));
  });

  test(`vector ${what}: response encodes and decodes`, () => {
    const { type, ...fields } = response;
    assert.deepEqual(encodeResponse(request.type, fields), hex(respHex));
    assert.deepEqual(decodeResponse(hex(respHex)), response);
    assert.equal(type, request.type | RESPONSE);
  });
}

test('vector unknown 0x42: decodes as unknown, answered with a bare 0x80', () => {
  assert.deepEqual(decodeRequest(hex('00000023 42 010203')), { id: 0x23, type: 0x42, unknown: true });
  assert.deepEqual(encodeResponse(0x42, { id: 0x23 }), hex('00000023 80'));
  assert.deepEqual(decodeResponse(hex('00000023 80')), { id: 0x23, type: 0x80 });
});

test('a message cut inside its fields is a WireError', () => {
  const full = hex('00000004 10 00000002 2f66 00001000 0000000000000000 0000000000000007');
  for (let len = 0; len < full.length; len++) {
    assert.throws(() => decodeRequest(full.subarray(0, len)), WireError, `length ${len}`);
  }
});

test('bytes after the last field are ignored', () => {
  assert.deepEqual(decodeRequest(hex('00000001 02 00000001 2f 0102030405')),
    { id: 1, type: Type.GETATTR, path: '/' });
  assert.deepEqual(decodeResponse(hex('00000005 91 00000002 ffff')), { id: 5, type: 0x91, result: 2 });
});

test('an error result carries nothing after it, even for types with payload', () => {
  assert.deepEqual(encodeResponse(Type.OPEN, { id: 3, result: -2, handle: 7n }), hex('00000003 8b fffffffe'));
  assert.deepEqual(encodeResponse(Type.READ, { id: 4, result: 0 }), hex('00000004 90 00000000'));
  assert.deepEqual(decodeResponse(hex('00000004 90 00000000')), { id: 4, type: 0x90, result: 0 });
});

test('u64 keeps all 64 bits both ways', () => {
  const msg = { id: 1, type: Type.READ, path: '/f', size: 1, offset: 0x123456789abcdef0n, handle: NO_HANDLE };
  assert.deepEqual(decodeRequest(encodeRequest(msg)), msg);
  assert.deepEqual(encodeRequest({ ...msg, offset: 5 }).subarray(15, 23), hex('0000000000000005'));
});

test('a read answer whose data length differs from its result is refused', () => {
  assert.throws(() => decodeResponse(hex('00000004 90 00000003 00000002 6162')), WireError);
});

test('a name count larger than the message is refused without allocating it', () => {
  assert.throws(() => decodeResponse(hex('00000002 93 00000000 ffffffff 00000001 61')), WireError);
});

test('encoding refuses values that do not fit their field', () => {
  assert.throws(() => encodeRequest({ id: 1, type: Type.ACCESS, path: '/', mode: 256 }), WireError);
  assert.throws(() => encodeRequest({ id: -1, type: Type.GETATTR, path: '/' }), WireError);
  assert.throws(() => encodeRequest({ id: 1, type: Type.GETATTR }), WireError);
  assert.throws(() => encodeResponse(Type.OPEN, { id: 1, result: 0, handle: -1n }), WireError);
});

test('strings are UTF-8', () => {
  const bytes = encodeRequest({ id: 1, type: Type.GETATTR, path: '/ä' });
  assert.deepEqual(bytes, hex('00000001 02 00000003 2fc3a4'));
  assert.equal(decodeRequest(bytes).path, '/ä');
});
