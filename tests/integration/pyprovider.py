#!/usr/bin/env python3
"""A reference webfuse2 provider in Python (stdlib only): serves a local directory read-write.

    python3 pyprovider.py --url ws://127.0.0.1:PORT/NAME --path DIR [--read-only]

Written from docs/webfuse2-protocol.md, independently of webfuse-provider, for the integration
tests: running a test against both providers tells a gateway bug from a provider bug
(WEBFUSE2_PROVIDER_CMD="python3 tests/integration/pyprovider.py" makes harness.py use it).
Single-threaded: one request at a time, answered in order. Exits when the connection closes.
With PYPROVIDER_TRACE=1 in the environment, every request and its result go to stderr.
"""

import argparse
import ctypes
import errno
import os
import stat
import struct
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wstest  # noqa: E402

NO_HANDLE = (1 << 64) - 1
O_LARGEFILE = 0o100000
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100

_libc = ctypes.CDLL(None, use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _renameat2(old, new, flags):
    if _libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new),
                       ctypes.c_uint(flags)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _utimensat(path, atime, mtime, fd=None):
    times = (_Timespec * 2)(_Timespec(*atime), _Timespec(*mtime))
    if fd is not None:
        rc = _libc.futimens(fd, times)
    else:
        rc = _libc.utimensat(AT_FDCWD, os.fsencode(path), times, AT_SYMLINK_NOFOLLOW)
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class Reader:
    def __init__(self, data, pos=5):
        self.data = data
        self.pos = pos

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self):
        return self.take(1)[0]

    def u32(self):
        return struct.unpack("!I", self.take(4))[0]

    def i32(self):
        return struct.unpack("!i", self.take(4))[0]

    def u64(self):
        return struct.unpack("!Q", self.take(8))[0]

    def bytes(self):
        return self.take(self.u32())

    def str(self):
        return os.fsdecode(self.bytes())

    def ts(self):
        return self.u64(), self.u32()


def _permissions(mode, is_dir):
    """As webfuse-provider: never set-user-ID, nor set-group-ID on a file."""
    return stat.S_IMODE(mode) & (0o3777 if is_dir else 0o1777)


def _b(data):
    return struct.pack("!I", len(data)) + data


def _ts(sec_float_ns):
    sec, nsec = divmod(sec_float_ns, 10 ** 9)
    return struct.pack("!QI", sec & ((1 << 64) - 1), nsec)


def _attributes(st):
    return struct.pack("!QQIIIQQQ", st.st_ino, st.st_nlink, st.st_mode, st.st_uid, st.st_gid,
                       st.st_rdev, st.st_size, st.st_blocks) + \
        _ts(st.st_atime_ns) + _ts(st.st_mtime_ns) + _ts(st.st_ctime_ns)


NAMES = {1: "access", 2: "getattr", 3: "readlink", 4: "symlink", 5: "link", 6: "rename",
         7: "chmod", 8: "chown", 9: "truncate", 10: "fsync", 11: "open", 12: "mknod",
         13: "create", 14: "release", 15: "unlink", 16: "read", 17: "write", 18: "mkdir",
         19: "readdir", 20: "rmdir", 21: "statfs", 22: "utimens", 23: "getcreds"}


class Provider:
    def __init__(self, root, read_only):
        self.trace = bool(os.environ.get("PYPROVIDER_TRACE"))
        self.root = os.path.abspath(root)
        self.read_only = read_only
        self.handles = {}
        self.next_handle = 1

    def real(self, path):
        return os.path.join(self.root, path.lstrip("/")) if path.strip("/") else self.root

    def writable(self):
        if self.read_only:
            raise OSError(errno.EROFS, "read-only")

    def fd_of(self, handle):
        return self.handles.get(handle)

    def handle(self, r, kind):
        """Returns the response body (after id and type), result first."""
        ok = struct.pack("!i", 0)
        if kind == 0x01:
            p = self.real(r.str())
            mode = r.u8()
            os.lstat(p)
            if mode & 2 and self.read_only:
                raise OSError(errno.EROFS, "read-only")
            if not os.access(p, mode):
                raise OSError(errno.EACCES, "access")
            return ok
        if kind == 0x02:
            return ok + _attributes(os.lstat(self.real(r.str())))
        if kind == 0x03:
            return ok + _b(os.fsencode(os.readlink(self.real(r.str()))))
        if kind == 0x04:
            target, link = r.str(), r.str()
            self.writable()
            os.symlink(target, self.real(link))
            return ok
        if kind == 0x05:
            old, new = r.str(), r.str()
            self.writable()
            os.link(self.real(old), self.real(new), follow_symlinks=False)
            return ok
        if kind == 0x06:
            old, new, flags = r.str(), r.str(), r.u8()
            self.writable()
            _renameat2(self.real(old), self.real(new), flags)
            return ok
        if kind == 0x07:
            p, mode = r.str(), r.u32()
            self.writable()
            os.chmod(self.real(p), _permissions(mode, os.path.isdir(self.real(p))))
            return ok
        if kind == 0x08:
            p, uid, gid = r.str(), r.u32(), r.u32()
            self.writable()
            uid = -1 if uid == 0xFFFFFFFF else uid
            gid = -1 if gid == 0xFFFFFFFF else gid
            os.chown(self.real(p), uid, gid, follow_symlinks=False)
            return ok
        if kind == 0x09:
            p, size, h = r.str(), r.u64(), r.u64()
            self.writable()
            fd = self.fd_of(h)
            if fd is not None:
                os.ftruncate(fd, size)
            else:
                os.truncate(self.real(p), size)
            return ok
        if kind == 0x0a:
            p, datasync, h = r.str(), r.u8(), r.u64()
            fd = self.fd_of(h)
            if fd is not None:
                (os.fdatasync if datasync else os.fsync)(fd)
            return ok
        if kind == 0x0b:
            p, flags = r.str(), r.i32()
            # As webfuse-provider does: O_DIRECT is the caller's wish to bypass its own cache;
            # here it would only demand aligned buffers (EINVAL from os.pread).
            flags &= ~(O_LARGEFILE | os.O_DIRECT)
            if self.read_only and (flags & 3 or flags & os.O_TRUNC):
                raise OSError(errno.EROFS, "read-only")
            fd = os.open(self.real(p), flags & ~(os.O_CREAT | os.O_EXCL))
            return ok + struct.pack("!Q", self.new_handle(fd))
        if kind == 0x0c:
            p, mode, rdev = r.str(), r.u32(), r.u64()
            self.writable()
            os.mknod(self.real(p), stat.S_IFMT(mode) | _permissions(mode, False), rdev)
            return ok
        if kind == 0x0d:
            p, mode = r.str(), r.u32()
            self.writable()
            fd = os.open(self.real(p), os.O_RDWR | os.O_CREAT | os.O_TRUNC,
                         _permissions(mode, False))
            return ok + struct.pack("!Q", self.new_handle(fd))
        if kind == 0x0e:
            p, h = r.str(), r.u64()
            fd = self.handles.pop(h, None)
            if fd is not None:
                os.close(fd)
            return ok
        if kind == 0x0f:
            p = r.str()
            self.writable()
            os.unlink(self.real(p))
            return ok
        if kind == 0x10:
            p, size, offset, h = r.str(), r.u32(), r.u64(), r.u64()
            fd = self.fd_of(h)
            if fd is None:
                with open(self.real(p), "rb") as f:
                    f.seek(offset)
                    data = f.read(size)
            else:
                data = os.pread(fd, size, offset)
            if not data:
                return ok
            return struct.pack("!i", len(data)) + _b(data)
        if kind == 0x11:
            p, data, offset, h = r.str(), r.bytes(), r.u64(), r.u64()
            self.writable()
            fd = self.fd_of(h)
            if fd is None:
                raise OSError(errno.EBADF, "no handle")
            n = os.pwrite(fd, data, offset)
            return struct.pack("!i", n)
        if kind == 0x12:
            p, mode = r.str(), r.u32()
            self.writable()
            os.mkdir(self.real(p), _permissions(mode, True))
            return ok
        if kind == 0x13:
            names = [os.fsencode(n) for n in os.listdir(self.real(r.str()))]
            return ok + struct.pack("!I", len(names)) + b"".join(_b(n) for n in names)
        if kind == 0x14:
            p = r.str()
            self.writable()
            os.rmdir(self.real(p))
            return ok
        if kind == 0x15:
            s = os.statvfs(self.real(r.str()))
            return ok + struct.pack("!8Q", s.f_bsize, s.f_frsize, s.f_blocks, s.f_bfree,
                                    s.f_bavail, s.f_files, s.f_ffree, s.f_namemax)
        if kind == 0x16:
            p, atime, mtime, h = r.str(), r.ts(), r.ts(), r.u64()
            self.writable()
            fd = self.fd_of(h)
            _utimensat(self.real(p), atime, mtime, fd)
            return ok
        return None

    def new_handle(self, fd):
        h = self.next_handle
        self.next_handle += 1
        self.handles[h] = fd
        return h

    def answer(self, msg):
        reply = self._answer(msg)
        if self.trace:
            r = Reader(msg)
            try:
                path = r.str() if len(msg) > 9 else ""
            except ValueError:
                path = "?"
            result = struct.unpack("!i", reply[5:9])[0] if reply and len(reply) >= 9 else None
            sys.stderr.write("pyprovider: id %d %s %r -> %s\n" % (
                struct.unpack("!I", msg[:4])[0], NAMES.get(msg[4], hex(msg[4])), path,
                errno.errorcode.get(-result, result) if result is not None and result < 0
                else result))
            sys.stderr.flush()
        return reply

    def _answer(self, msg):
        if len(msg) < 5:
            return None
        rid, kind = struct.unpack("!IB", msg[:5])
        if kind == 0x17:
            return struct.pack("!IB", rid, 0x97) + _b(b"")
        try:
            body = self.handle(Reader(msg), kind)
        except OSError as e:
            body = struct.pack("!i", -(e.errno or errno.EIO))
        except ValueError:
            return None
        if body is None:
            return struct.pack("!IB", rid, 0x80)
        return struct.pack("!IB", rid, 0x80 | kind) + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--read-only", action="store_true")
    args = ap.parse_args()
    url = urllib.parse.urlparse(args.url)
    provider = Provider(args.path, args.read_only)
    ws, _ = wstest.connect(url.hostname, url.port or 80, url.path or "/", subprotocol="webfuse2")
    try:
        while True:
            kind, msg = ws.recv_message(timeout=1e9)
            if kind != "binary":
                continue
            reply = provider.answer(msg)
            if reply is not None:
                ws.send_binary(reply)
    except wstest.Closed:
        pass
    finally:
        ws.abort()


if __name__ == "__main__":
    main()
