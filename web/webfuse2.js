// The webfuse2 wire format (docs/protocols.md): pure functions from messages to bytes and back.
// No sockets, no DOM: the provider and its tests share it, in browsers and in node.
//
// Numbers: u8/u32/i32 fields are JavaScript numbers; u64 fields (handles, offsets, sizes, inode
// numbers, timestamps' seconds) decode to BigInt, and the encoder takes a number or a BigInt, so
// a handle of all ones ("no open file") survives the round trip.

export const SUBPROTOCOL = 'webfuse2';

export const Type = Object.freeze({
  UNKNOWN: 0x00,
  ACCESS: 0x01,
  GETATTR: 0x02,
  READLINK: 0x03,
  SYMLINK: 0x04,
  LINK: 0x05,
  RENAME: 0x06,
  CHMOD: 0x07,
  CHOWN: 0x08,
  TRUNCATE: 0x09,
  FSYNC: 0x0a,
  OPEN: 0x0b,
  MKNOD: 0x0c,
  CREATE: 0x0d,
  RELEASE: 0x0e,
  UNLINK: 0x0f,
  READ: 0x10,
  WRITE: 0x11,
  MKDIR: 0x12,
  READDIR: 0x13,
  RMDIR: 0x14,
  STATFS: 0x15,
  UTIMENS: 0x16,
  GETCREDS: 0x17,
  // Our extension (docs/protocols.md): a page of entries with their attributes.
  READDIRPLUS: 0x18,
});

// A response's type is its request's type with this bit set; 0x80 alone answers an unknown type.
export const RESPONSE = 0x80;

// "no open file" in handle fields
export const NO_HANDLE = 0xffffffffffffffffn;

// Linux errno values, as the protocol carries them (negated) in results.
export const Errno = Object.freeze({
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  EACCES: 13,
  EEXIST: 17,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EMFILE: 24,
  ENOSPC: 28,
  EROFS: 30,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ENOTSUP: 95,
});

export const OpenFlags = Object.freeze({
  ACCMODE: 0o3,
  WRONLY: 0o1,
  RDWR: 0o2,
  CREAT: 0o100,
  TRUNC: 0o1000,
  APPEND: 0o2000,
});

export const Access = Object.freeze({ F_OK: 0, X_OK: 1, W_OK: 2, R_OK: 4 });

// Fields after the header, in wire order.
const REQUEST_FIELDS = {
  [Type.ACCESS]: [['path', 'string'], ['mode', 'u8']],
  [Type.GETATTR]: [['path', 'string']],
  [Type.READLINK]: [['path', 'string']],
  [Type.SYMLINK]: [['target', 'string'], ['linkpath', 'string']],
  [Type.LINK]: [['oldPath', 'string'], ['newPath', 'string']],
  [Type.RENAME]: [['oldPath', 'string'], ['newPath', 'string'], ['flags', 'u8']],
  [Type.CHMOD]: [['path', 'string'], ['mode', 'u32']],
  [Type.CHOWN]: [['path', 'string'], ['uid', 'u32'], ['gid', 'u32']],
  [Type.TRUNCATE]: [['path', 'string'], ['size', 'u64'], ['handle', 'u64']],
  [Type.FSYNC]: [['path', 'string'], ['datasync', 'bool'], ['handle', 'u64']],
  [Type.OPEN]: [['path', 'string'], ['flags', 'i32']],
  [Type.MKNOD]: [['path', 'string'], ['mode', 'u32'], ['rdev', 'u64']],
  [Type.CREATE]: [['path', 'string'], ['mode', 'u32']],
  [Type.RELEASE]: [['path', 'string'], ['handle', 'u64']],
  [Type.UNLINK]: [['path', 'string']],
  [Type.READ]: [['path', 'string'], ['size', 'u32'], ['offset', 'u64'], ['handle', 'u64']],
  [Type.WRITE]: [['path', 'string'], ['data', 'bytes'], ['offset', 'u64'], ['handle', 'u64']],
  [Type.MKDIR]: [['path', 'string'], ['mode', 'u32']],
  [Type.READDIR]: [['path', 'string']],
  [Type.RMDIR]: [['path', 'string']],
  [Type.STATFS]: [['path', 'string']],
  [Type.UTIMENS]: [['path', 'string'], ['atime', 'timestamp'], ['mtime', 'timestamp'],
    ['handle', 'u64']],
  [Type.GETCREDS]: [],
  [Type.READDIRPLUS]: [['path', 'string'], ['cookie', 'u64'], ['maxEntries', 'u32']],
};

// Fields after the result, present only on success (for read: when the result is above 0).
const RESPONSE_FIELDS = {
  [Type.GETATTR]: [['attributes', 'attributes']],
  [Type.READLINK]: [['target', 'string']],
  [Type.OPEN]: [['handle', 'u64']],
  [Type.CREATE]: [['handle', 'u64']],
  [Type.READ]: [['data', 'bytes']],
  [Type.READDIR]: [['names', 'strings']],
  [Type.STATFS]: [['statistics', 'statistics']],
  // cookie: where the next page starts, 0 when this page is the last
  [Type.READDIRPLUS]: [['cookie', 'u64'], ['entries', 'dirents']],
};

const ATTRIBUTE_FIELDS = [['inode', 'u64'], ['nlink', 'u64'], ['mode', 'u32'], ['uid', 'u32'],
  ['gid', 'u32'], ['rdev', 'u64'], ['size', 'u64'], ['blocks', 'u64'], ['atime', 'timestamp'],
  ['mtime', 'timestamp'], ['ctime', 'timestamp']];

const STATISTICS_FIELDS = ['bsize', 'frsize', 'blocks', 'bfree', 'bavail', 'files', 'ffree',
  'namemax'].map((name) => [name, 'u64']);

const TIMESTAMP_FIELDS = [['sec', 'u64'], ['nsec', 'u32']];

// The smallest READDIRPLUS entry: an empty name's length and the attributes.
const DIRENT_MIN = 4 + 88;

// A message that is too short for its fields or carries a value of the wrong kind.
export class WireError extends Error {}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new WireError('expected bytes (ArrayBuffer or a typed array)');
}

class Writer {
  constructor() {
    this.bytes = new Uint8Array(64);
    this.view = new DataView(this.bytes.buffer);
    this.length = 0;
  }

  reserve(n) {
    if (this.length + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.length + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
    this.view = new DataView(grown.buffer);
  }

  u8(v) {
    this.reserve(1);
    this.view.setUint8(this.length, checkInt(v, 0, 0xff));
    this.length += 1;
  }

  u32(v) {
    this.reserve(4);
    this.view.setUint32(this.length, checkInt(v, 0, 0xffffffff));
    this.length += 4;
  }

  i32(v) {
    this.reserve(4);
    this.view.setInt32(this.length, checkInt(v, -0x80000000, 0x7fffffff));
    this.length += 4;
  }

  u64(v) {
    const big = typeof v === 'bigint' ? v : BigInt(checkInt(v, 0, Number.MAX_SAFE_INTEGER));
    if (big < 0n || big > NO_HANDLE) throw new WireError(`u64 out of range: ${v}`);
    this.reserve(8);
    this.view.setBigUint64(this.length, big);
    this.length += 8;
  }

  raw(bytes) {
    this.u32(bytes.length);
    this.reserve(bytes.length);
    this.bytes.set(bytes, this.length);
    this.length += bytes.length;
  }

  field(kind, value) {
    switch (kind) {
      case 'u8': return this.u8(value);
      case 'bool': return this.u8(value ? 1 : 0);
      case 'u32': return this.u32(value);
      case 'i32': return this.i32(value);
      case 'u64': return this.u64(value);
      case 'string': return this.raw(utf8Encoder.encode(checkString(value)));
      case 'bytes': return this.raw(toBytes(value));
      case 'strings':
        this.u32(value.length);
        for (const s of value) this.raw(utf8Encoder.encode(checkString(s)));
        return undefined;
      case 'dirents':
        this.u32(value.length);
        for (const entry of value) {
          this.raw(utf8Encoder.encode(checkString(entry.name)));
          this.fields(ATTRIBUTE_FIELDS, entry.attributes);
        }
        return undefined;
      case 'timestamp': return this.fields(TIMESTAMP_FIELDS, value);
      case 'attributes': return this.fields(ATTRIBUTE_FIELDS, value);
      case 'statistics': return this.fields(STATISTICS_FIELDS, value);
      default: throw new WireError(`unknown field kind ${kind}`);
    }
  }

  fields(list, values) {
    if (values === null || typeof values !== 'object') throw new WireError('missing fields');
    for (const [name, kind] of list) {
      if (values[name] === undefined) throw new WireError(`missing field ${name}`);
      this.field(kind, values[name]);
    }
  }

  done() {
    return this.bytes.slice(0, this.length);
  }
}

function checkInt(v, min, max) {
  if (!Number.isInteger(v) || v < min || v > max) throw new WireError(`bad integer ${v}`);
  return v;
}

function checkString(v) {
  if (typeof v !== 'string') throw new WireError(`expected a string, got ${typeof v}`);
  return v;
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.offset = 0;
  }

  need(n) {
    if (this.offset + n > this.bytes.length) {
      throw new WireError(`message too short: needs ${this.offset + n} bytes, has ${this.bytes.length}`);
    }
  }

  u8() {
    this.need(1);
    return this.view.getUint8(this.offset++);
  }

  u32() {
    this.need(4);
    const v = this.view.getUint32(this.offset);
    this.offset += 4;
    return v;
  }

  i32() {
    this.need(4);
    const v = this.view.getInt32(this.offset);
    this.offset += 4;
    return v;
  }

  u64() {
    this.need(8);
    const v = this.view.getBigUint64(this.offset);
    this.offset += 8;
    return v;
  }

  raw() {
    const n = this.u32();
    this.need(n);
    const v = this.bytes.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }

  field(kind) {
    switch (kind) {
      case 'u8': return this.u8();
      case 'bool': return this.u8() !== 0;
      case 'u32': return this.u32();
      case 'i32': return this.i32();
      case 'u64': return this.u64();
      case 'string': return utf8Decoder.decode(this.raw());
      case 'bytes': return this.raw();
      case 'strings': {
        const count = this.u32();
        // Each name takes at least its 4-byte length: a count beyond that is a lie.
        this.need(count * 4);
        const names = [];
        for (let i = 0; i < count; i++) names.push(utf8Decoder.decode(this.raw()));
        return names;
      }
      case 'dirents': {
        const count = this.u32();
        // Each entry takes at least a 4-byte length and 88 bytes of attributes.
        this.need(count * DIRENT_MIN);
        const entries = [];
        for (let i = 0; i < count; i++) {
          entries.push({ name: utf8Decoder.decode(this.raw()), attributes: this.fields(ATTRIBUTE_FIELDS) });
        }
        return entries;
      }
      case 'timestamp': return this.fields(TIMESTAMP_FIELDS);
      case 'attributes': return this.fields(ATTRIBUTE_FIELDS);
      case 'statistics': return this.fields(STATISTICS_FIELDS);
      default: throw new WireError(`unknown field kind ${kind}`);
    }
  }

  fields(list, into = {}) {
    for (const [name, kind] of list) into[name] = this.field(kind);
    return into;
  }
}

function writeHeader(w, id, type) {
  w.u32(id);
  w.u8(type);
}

// {id, type} of a message, or a WireError when it is shorter than the header.
export function decodeHeader(data) {
  const r = new Reader(toBytes(data));
  return { id: r.u32(), type: r.u8() };
}

export function isKnownRequest(type) {
  return Object.prototype.hasOwnProperty.call(REQUEST_FIELDS, type);
}

// Bytes of a request: {id, type, ...fields named as in REQUEST_FIELDS}.
export function encodeRequest(msg) {
  const w = new Writer();
  writeHeader(w, msg.id, msg.type);
  if (isKnownRequest(msg.type)) w.fields(REQUEST_FIELDS[msg.type], msg);
  else if (msg.payload) w.raw(toBytes(msg.payload));
  return w.done();
}

// {id, type, ...fields}; an unknown type decodes to {id, type, unknown: true}. Bytes after the
// fields are ignored (future optional fields). Throws WireError when fields are cut short.
export function decodeRequest(data) {
  const r = new Reader(toBytes(data));
  const msg = { id: r.u32(), type: r.u8() };
  if (!isKnownRequest(msg.type)) {
    msg.unknown = true;
    return msg;
  }
  return r.fields(REQUEST_FIELDS[msg.type], msg);
}

function hasPayload(requestType, result) {
  return requestType === Type.READ ? result > 0 : result === 0;
}

// Bytes of the response to a request of `requestType`: {id, result, ...fields}. getcreds takes
// {id, credentials} (its response has no result); an unknown request type gets the bare 0x80.
export function encodeResponse(requestType, msg) {
  const w = new Writer();
  if (!isKnownRequest(requestType)) {
    writeHeader(w, msg.id, RESPONSE);
    return w.done();
  }
  writeHeader(w, msg.id, requestType | RESPONSE);
  if (requestType === Type.GETCREDS) {
    w.field('string', msg.credentials);
    return w.done();
  }
  w.i32(msg.result);
  const fields = RESPONSE_FIELDS[requestType];
  if (fields && hasPayload(requestType, msg.result)) w.fields(fields, msg);
  return w.done();
}

// {id, type, result, ...fields} of a response (the service side, and tests). 0x80 decodes to
// {id, type: 0x80}; getcreds to {id, type, credentials}.
export function decodeResponse(data) {
  const r = new Reader(toBytes(data));
  const msg = { id: r.u32(), type: r.u8() };
  const requestType = msg.type & ~RESPONSE;
  if (msg.type === RESPONSE || !(msg.type & RESPONSE) || !isKnownRequest(requestType)) return msg;
  if (requestType === Type.GETCREDS) {
    msg.credentials = r.field('string');
    return msg;
  }
  msg.result = r.i32();
  const fields = RESPONSE_FIELDS[requestType];
  if (fields && hasPayload(requestType, msg.result)) r.fields(fields, msg);
  if (requestType === Type.READ && msg.result > 0 && msg.data.length !== msg.result) {
    throw new WireError(`read result ${msg.result} with ${msg.data.length} bytes of data`);
  }
  return msg;
}
