// A read-only webfuse2 provider for a flat list of files, with no DOM in it: the page in this
// folder is a thin layer over it, and node's test runner drives it with a fake socket.
//
//   const provider = new WebfuseProvider({
//     url: 'ws://device:8081/upload',            // the last path segment names the filesystem
//     files: [{ name, size, mtime, read(offset, length) }],  // read -> Promise<ArrayBuffer|Uint8Array>
//   });
//   provider.on('read', (e) => ...);             // bytes served, per file
//   provider.on('close', (e) => ...);            // {code, reason, wasOpen, byUser}
//   provider.connect();  ...  provider.close();
//
// The gateway sends requests; every request gets exactly one answer, reads as soon as their
// bytes are there, so answers may leave in another order than their requests came.

import {
  Access, Errno, NO_HANDLE, OpenFlags, SUBPROTOCOL, Type, WireError,
  decodeHeader, decodeRequest, encodeResponse,
} from './webfuse2.js';

export { SUBPROTOCOL };

// The gateway's rule for filesystem names.
export function validFilesystemName(name) {
  return typeof name === 'string' && /^[A-Za-z0-9._-]{1,64}$/.test(name) && name !== '.' &&
    name !== '..';
}

const NAME_MAX = 255;
const utf8 = new TextEncoder();

// A name a file can have in the filesystem's root.
export function validEntryName(name) {
  return typeof name === 'string' && name.length > 0 && name !== '.' && name !== '..' &&
    !name.includes('/') && !name.includes('\0') && utf8.encode(name).length <= NAME_MAX;
}

// The longest start of `text`, in whole code points, that fits `bytes` bytes of UTF-8.
function utf8Prefix(text, bytes) {
  let used = 0;
  let end = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0);
    used += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (used > bytes) break;
    end += ch.length;
  }
  return text.slice(0, end);
}

// stem + suffix + ext cut to NAME_MAX bytes, from the end of the stem (the extension stays).
function fitName(stem, suffix, ext) {
  const name = stem + suffix + ext;
  if (utf8.encode(name).length <= NAME_MAX) return name;
  const room = NAME_MAX - utf8.encode(suffix + ext).length;
  return utf8Prefix(stem, room) + suffix + ext;
}

// Names for a list of files that may repeat ("a.bin" twice becomes "a.bin", "a (2).bin") or be
// longer than a name may be (other systems count characters, not bytes).
export function uniqueNames(names) {
  const taken = new Set();
  return names.map((name) => {
    const dot = name.lastIndexOf('.');
    const hasExt = dot > 0 && utf8.encode(name.slice(dot)).length <= 32;
    const stem = hasExt ? name.slice(0, dot) : name;
    const ext = hasExt ? name.slice(dot) : '';
    let candidate = fitName(stem, '', ext);
    for (let n = 2; taken.has(candidate); n++) candidate = fitName(stem, ` (${n})`, ext);
    taken.add(candidate);
    return candidate;
  });
}

// Which bytes of a file were read at least once, as merged ranges: a progress measure that
// re-reads (a loop-mounted image reads some blocks many times) do not inflate. Scattered reads
// (random 4 KiB reads of a large image, or a gateway aiming at it) would make the list, and each
// insertion into it, grow without end: beyond MAX_RANGES the two ranges with the smallest gap
// merge. The gap is not counted, then or when it is read later: the total stays a lower bound
// (a progress bar may lag behind, never run ahead).
export class Coverage {
  static MAX_RANGES = 4096;
  #ranges = []; // sorted, disjoint, not touching: [start, end)
  total = 0;

  add(start, end) {
    if (end <= start) return this.total;
    const ranges = this.#ranges;
    let lo = 0;
    let hi = ranges.length;
    while (lo < hi) { // first range that ends at or after `start`
      const mid = (lo + hi) >> 1;
      if (ranges[mid][1] < start) lo = mid + 1;
      else hi = mid;
    }
    let i = lo;
    let from = start;
    let to = end;
    while (i < ranges.length && ranges[i][0] <= end) {
      from = Math.min(from, ranges[i][0]);
      to = Math.max(to, ranges[i][1]);
      this.total -= ranges[i][1] - ranges[i][0];
      i++;
    }
    ranges.splice(lo, i - lo, [from, to]);
    this.total += to - from;
    if (ranges.length > Coverage.MAX_RANGES) this.#mergeClosest();
    return this.total;
  }

  #mergeClosest() {
    const ranges = this.#ranges;
    let best = 0;
    for (let i = 1; i + 1 < ranges.length; i++) {
      if (ranges[i + 1][0] - ranges[i][1] < ranges[best + 1][0] - ranges[best][1]) best = i;
    }
    ranges.splice(best, 2, [ranges[best][0], ranges[best + 1][1]]);
  }

  get rangeCount() {
    return this.#ranges.length;
  }
}

const ROOT = Object.freeze({ directory: true });
const DEFAULT_MAX_OPEN_FILES = 1024;
// The gateway's kernel asks for at most 1 MiB a read; a larger size (up to 4 GiB fits the
// field) would have the tab hold that much of the file at once. Answered short, as a file
// system may.
const MAX_READ = 1024 * 1024;
const STATFS_BLOCK = 4096;
const REQUESTS_THAT_WRITE = new Set([Type.SYMLINK, Type.LINK, Type.RENAME, Type.CHMOD,
  Type.CHOWN, Type.TRUNCATE, Type.MKNOD, Type.CREATE, Type.UNLINK, Type.WRITE, Type.MKDIR,
  Type.RMDIR, Type.UTIMENS]);
const CLOSE_NORMAL = 1000;
const CLOSE_POLICY = 1008;
// A gateway sends requests as fast as it likes and may stop reading the answers. At most
// READS_IN_FLIGHT file reads run at once and the rest wait, at most READS_WAITING of them; none
// starts while more than SEND_HIGH_WATER bytes of answers wait to be sent (looked at again every
// SEND_POLL_MS). A gateway past those bounds, or with SEND_LIMIT bytes unread, is not reading:
// the page closes the connection, as the native provider does, before the tab runs out of memory.
const READS_IN_FLIGHT = 32;
const READS_WAITING = 4096;
const SEND_HIGH_WATER = 8 * 1024 * 1024;
const SEND_LIMIT = 64 * 1024 * 1024;
const SEND_POLL_MS = 20;
// A gateway that does not answer the close frame: the page stops waiting for it.
const CLOSE_WAIT_MS = 3000;

function timestamp(ms) {
  const t = Math.max(0, Math.floor(ms));
  return { sec: BigInt(Math.floor(t / 1000)), nsec: (t % 1000) * 1e6 };
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('read() must resolve to an ArrayBuffer or a Uint8Array');
}

function checkFile(file, index) {
  if (!file || !validEntryName(file.name)) {
    throw new TypeError(`file ${index}: a name of 1-255 bytes without "/" is needed, not ` +
      `${JSON.stringify(file && file.name)}`);
  }
  if (!Number.isSafeInteger(file.size) || file.size < 0) {
    throw new TypeError(`file ${file.name}: size must be a non-negative integer`);
  }
  if (typeof file.read !== 'function') throw new TypeError(`file ${file.name}: read() is missing`);
}

function defaultSocket(url, protocol) {
  return new globalThis.WebSocket(url, protocol);
}

export class WebfuseProvider {
  #url;
  #token;
  #createSocket;
  #maxOpenFiles;
  #entries;
  #byName = new Map();
  #started;
  #listeners = new Map();
  #socket = null;
  #state = 'idle'; // idle, connecting, open, closing, closed
  #wasOpen = false;
  #byUser = false;
  #localReason = ''; // why the page itself closed the connection, if it did
  #closeTimer = null;
  #reading = 0; // file reads running
  #readsWaiting = [];
  #pollTimer = null;
  #handles = new Map(); // BigInt handle -> entry
  #nextHandle = 1n;

  // options: url, files, token (answer to getcreds), createSocket(url, protocol) returning a
  // WebSocket-like object (default: the global WebSocket), maxOpenFiles (default 1024).
  constructor({ url, files, token = '', createSocket = defaultSocket,
    maxOpenFiles = DEFAULT_MAX_OPEN_FILES } = {}) {
    if (typeof url !== 'string' || url === '') throw new TypeError('url is needed');
    if (!Array.isArray(files)) throw new TypeError('files must be an array');
    this.#url = url;
    this.#token = String(token);
    this.#createSocket = createSocket;
    this.#maxOpenFiles = maxOpenFiles;
    this.#started = Date.now();
    this.#entries = files.map((file, index) => {
      checkFile(file, index);
      if (this.#byName.has(file.name)) throw new TypeError(`file name ${file.name} is used twice`);
      const entry = {
        index,
        name: file.name,
        size: file.size,
        mtime: Number.isFinite(Number(file.mtime)) ? Number(file.mtime) : this.#started,
        read: file.read,
        served: 0,
        reads: 0,
        coverage: new Coverage(),
      };
      this.#byName.set(file.name, entry);
      return entry;
    });
  }

  get url() {
    return this.#url;
  }

  get state() {
    return this.#state;
  }

  get openFiles() {
    return this.#handles.size;
  }

  // What was served so far: [{name, size, served, covered, reads}].
  get files() {
    return this.#entries.map((e) => ({
      name: e.name, size: e.size, served: e.served, covered: e.coverage.total, reads: e.reads,
    }));
  }

  // Events: 'state' {state}, 'open' {}, 'read' {index, name, offset, length, served, covered,
  // size}, 'readerror' {index, name, message} (the browser could not read a chosen file; the
  // device got EIO), 'close' {code, reason, wasClean, wasOpen, byUser, localReason}, 'error'
  // {message}.
  // Returns a function that removes the listener.
  on(type, listener) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(listener);
    return () => this.#listeners.get(type).delete(listener);
  }

  #emit(type, detail) {
    for (const listener of this.#listeners.get(type) || []) listener(detail);
  }

  #setState(state) {
    this.#state = state;
    this.#emit('state', { state });
  }

  connect() {
    if (this.#state === 'connecting' || this.#state === 'open' || this.#state === 'closing') {
      throw new Error('already connected');
    }
    this.#wasOpen = false;
    this.#byUser = false;
    this.#localReason = '';
    const socket = this.#createSocket(this.#url, SUBPROTOCOL);
    socket.binaryType = 'arraybuffer';
    this.#socket = socket;
    this.#setState('connecting');
    socket.onopen = () => {
      if (this.#socket !== socket) return;
      this.#wasOpen = true;
      this.#setState('open');
      this.#emit('open', {});
    };
    socket.onmessage = (event) => {
      if (this.#socket === socket) this.#receive(socket, event.data);
    };
    socket.onerror = () => {
      if (this.#socket === socket) this.#emit('error', { message: 'websocket error' });
    };
    socket.onclose = (event) => {
      if (this.#socket === socket) this.#closed(event);
    };
  }

  // Detaches: the gateway unmounts the filesystem.
  close(reason = 'detached by the user') {
    if (!this.#socket || this.#state === 'closing' || this.#state === 'closed') return;
    this.#byUser = true;
    this.#beginClose(CLOSE_NORMAL, reason);
  }

  #beginClose(code, reason) {
    const socket = this.#socket;
    this.#localReason = reason;
    this.#readsWaiting = []; // their answers could not be sent any more
    this.#setState('closing');
    socket.close(code, reason);
    this.#closeTimer = setTimeout(() => {
      if (this.#socket === socket) this.#closed({ code: 1006, reason: '', wasClean: false });
    }, CLOSE_WAIT_MS);
  }

  #closed(event) {
    clearTimeout(this.#closeTimer);
    clearTimeout(this.#pollTimer);
    this.#closeTimer = this.#pollTimer = null;
    this.#socket = null;
    this.#handles.clear();
    this.#readsWaiting = [];
    this.#reading = 0; // reads still running belong to the connection that ended
    this.#setState('closed');
    this.#emit('close', {
      code: event.code, reason: event.reason || '', wasClean: Boolean(event.wasClean),
      wasOpen: this.#wasOpen, byUser: this.#byUser, localReason: this.#localReason,
    });
  }

  // The gateway asks for more than it reads: see READS_IN_FLIGHT.
  #overloaded(reason) {
    this.#emit('error', { message: `closing the connection: ${reason}` });
    this.#beginClose(CLOSE_POLICY, reason);
  }

  #send(socket, bytes) {
    // An answer that completes after its connection ended has nobody to go to.
    if (this.#socket === socket && this.#state === 'open') socket.send(bytes);
  }

  #receive(socket, data) {
    if (typeof data === 'string') {
      this.#emit('error', { message: 'ignored a text message (webfuse2 is binary)' });
      return;
    }
    if (data && typeof data.arrayBuffer === 'function' && !(data instanceof ArrayBuffer)) {
      data.arrayBuffer().then((buffer) => {
        if (this.#socket === socket) this.#receive(socket, buffer);
      }, (error) => this.#emit('error', { message: `unreadable message: ${error.message}` }));
      return;
    }
    let request;
    try {
      request = decodeRequest(data);
    } catch (error) {
      this.#malformed(socket, data, error);
      return;
    }
    if (request.unknown) {
      this.#send(socket, encodeResponse(request.type, { id: request.id }));
      return;
    }
    if (this.#state !== 'open') return; // closing: no new work
    if ((socket.bufferedAmount || 0) > SEND_LIMIT) {
      this.#overloaded('the gateway does not read the answers');
    } else if (request.type !== Type.READ) {
      this.#run(socket, request);
    } else if (this.#readsWaiting.length >= READS_WAITING) {
      this.#overloaded('too many reads waiting');
    } else {
      this.#readsWaiting.push(request);
      this.#startReads(socket);
    }
  }

  #run(socket, request) {
    return Promise.resolve()
      .then(() => this.#dispatch(socket, request))
      .catch((error) => {
        this.#emit('error', { message: `request ${request.id} failed: ${error.message}` });
        return { result: -Errno.EIO };
      })
      .then((answer) => this.#answer(socket, request, answer));
  }

  #startReads(socket) {
    while (this.#socket === socket && this.#state === 'open' && this.#readsWaiting.length > 0 &&
      this.#reading < READS_IN_FLIGHT && (socket.bufferedAmount || 0) <= SEND_HIGH_WATER) {
      this.#reading++;
      this.#run(socket, this.#readsWaiting.shift()).finally(() => {
        if (this.#socket !== socket) return; // counted in a connection that ended
        this.#reading--;
        this.#startReads(socket);
      });
    }
    const held = this.#readsWaiting.length > 0 && this.#reading < READS_IN_FLIGHT;
    if (this.#socket === socket && held && this.#pollTimer === null) {
      // Held back by answers not yet sent: the socket says nothing when they leave.
      this.#pollTimer = setTimeout(() => {
        this.#pollTimer = null;
        this.#startReads(socket);
      }, SEND_POLL_MS);
    }
  }

  #answer(socket, request, answer) {
    let bytes;
    try {
      bytes = encodeResponse(request.type, { id: request.id, ...answer });
    } catch (error) {
      this.#emit('error', { message: `cannot encode answer ${request.id}: ${error.message}` });
      bytes = encodeResponse(request.type, { id: request.id, result: -Errno.EIO });
    }
    this.#send(socket, bytes);
  }

  #malformed(socket, data, error) {
    this.#emit('error', { message: `malformed request: ${error.message}` });
    if (!(error instanceof WireError)) return;
    let header;
    try {
      header = decodeHeader(data);
    } catch {
      return; // not even an id to answer to
    }
    this.#send(socket, encodeResponse(header.type, { id: header.id, result: -Errno.EINVAL }));
  }

  #dispatch(socket, request) {
    if (REQUESTS_THAT_WRITE.has(request.type)) return { result: -Errno.EROFS };
    switch (request.type) {
      case Type.ACCESS: return this.#access(request);
      case Type.GETATTR: return this.#getattr(request);
      case Type.READLINK: return { result: this.#find(request.path) ? -Errno.EINVAL : -Errno.ENOENT };
      case Type.OPEN: return this.#open(request);
      case Type.RELEASE: return this.#release(request);
      case Type.READ: return this.#read(socket, request);
      case Type.READDIR: return this.#readdir(request);
      case Type.READDIRPLUS: return this.#readdirplus(request);
      case Type.STATFS: return this.#statfs(request);
      case Type.FSYNC: return { result: 0 }; // nothing was written, nothing to flush
      case Type.GETCREDS: return { credentials: this.#token };
      default: return { result: -Errno.ENOSYS };
    }
  }

  // ROOT, an entry, or null.
  #find(path) {
    if (path === '/') return ROOT;
    if (typeof path !== 'string' || path[0] !== '/' || path.indexOf('/', 1) !== -1) return null;
    return this.#byName.get(path.slice(1)) || null;
  }

  #attributes(node) {
    if (node === ROOT) {
      const t = timestamp(this.#started);
      return { inode: 1n, nlink: 2n, mode: 0o40555, uid: 0, gid: 0, rdev: 0n, size: 0n,
        blocks: 0n, atime: t, mtime: t, ctime: t };
    }
    const t = timestamp(node.mtime);
    return { inode: BigInt(node.index + 2), nlink: 1n, mode: 0o100444, uid: 0, gid: 0, rdev: 0n,
      size: BigInt(node.size), blocks: BigInt(Math.ceil(node.size / 512)), atime: t, mtime: t,
      ctime: t };
  }

  #access(request) {
    const node = this.#find(request.path);
    if (!node) return { result: -Errno.ENOENT };
    if (request.mode & Access.W_OK) return { result: -Errno.EROFS };
    if ((request.mode & Access.X_OK) && node !== ROOT) return { result: -Errno.EACCES };
    return { result: 0 };
  }

  #getattr(request) {
    const node = this.#find(request.path);
    return node ? { result: 0, attributes: this.#attributes(node) } : { result: -Errno.ENOENT };
  }

  #open(request) {
    const node = this.#find(request.path);
    if (!node) return { result: -Errno.ENOENT };
    const flags = request.flags;
    if ((flags & OpenFlags.ACCMODE) !== 0 || (flags & (OpenFlags.TRUNC | OpenFlags.CREAT))) {
      return { result: -Errno.EROFS };
    }
    if (this.#handles.size >= this.#maxOpenFiles) return { result: -Errno.EMFILE };
    const handle = this.#nextHandle++;
    this.#handles.set(handle, node);
    return { result: 0, handle };
  }

  #release(request) {
    return { result: this.#handles.delete(request.handle) ? 0 : -Errno.EBADF };
  }

  async #read(socket, request) {
    let node;
    if (request.handle === NO_HANDLE) node = this.#find(request.path);
    else node = this.#handles.get(request.handle);
    if (!node) return { result: request.handle === NO_HANDLE ? -Errno.ENOENT : -Errno.EBADF };
    if (node === ROOT) return { result: -Errno.EISDIR };
    if (request.offset >= BigInt(node.size)) return { result: 0 };
    const offset = Number(request.offset);
    const length = Math.min(request.size, MAX_READ, node.size - offset);
    if (length === 0) return { result: 0 };
    let data;
    try {
      data = await node.read(offset, length);
    } catch (error) {
      if (this.#socket === socket) { // else nobody waits for it: the connection ended
        this.#emit('readerror', { index: node.index, name: node.name, message: error.message });
      }
      return { result: -Errno.EIO };
    }
    if (this.#socket !== socket || this.#state !== 'open') return { result: -Errno.EIO };
    let bytes = asBytes(data);
    if (bytes.length > length) bytes = bytes.subarray(0, length);
    this.#account(node, offset, bytes.length);
    return bytes.length > 0 ? { result: bytes.length, data: bytes } : { result: 0 };
  }

  #account(entry, offset, length) {
    entry.served += length;
    entry.reads += 1;
    entry.coverage.add(offset, offset + length);
    this.#emit('read', {
      index: entry.index, name: entry.name, offset, length, served: entry.served,
      covered: entry.coverage.total, size: entry.size,
    });
  }

  #readdir(request) {
    const node = this.#find(request.path);
    if (!node) return { result: -Errno.ENOENT };
    if (node !== ROOT) return { result: -Errno.ENOTDIR };
    return { result: 0, names: this.#entries.map((e) => e.name) };
  }

  // Pages of the file list with attributes; a cookie is the index of the page's first entry.
  #readdirplus(request) {
    const node = this.#find(request.path);
    if (!node) return { result: -Errno.ENOENT };
    if (node !== ROOT) return { result: -Errno.ENOTDIR };
    if (request.maxEntries === 0) return { result: -Errno.EINVAL };
    const start = request.cookie > BigInt(this.#entries.length) ? this.#entries.length :
      Number(request.cookie);
    const end = Math.min(this.#entries.length, start + request.maxEntries);
    const entries = this.#entries.slice(start, end)
      .map((e) => ({ name: e.name, attributes: this.#attributes(e) }));
    return { result: 0, cookie: end < this.#entries.length ? BigInt(end) : 0n, entries };
  }

  #statfs(request) {
    if (!this.#find(request.path)) return { result: -Errno.ENOENT };
    const bytes = this.#entries.reduce((sum, e) => sum + e.size, 0);
    const blocks = BigInt(Math.ceil(bytes / STATFS_BLOCK));
    return {
      result: 0,
      statistics: { bsize: BigInt(STATFS_BLOCK), frsize: BigInt(STATFS_BLOCK), blocks,
        bfree: 0n, bavail: 0n, files: BigInt(this.#entries.length + 1), ffree: 0n,
        namemax: BigInt(NAME_MAX) },
    };
  }
}
