#!/usr/bin/env python3
"""Limits (issue 6): sessions at once, filesystems per session, requests in flight per session,
message size, path length, and the idle time of a connection that never attaches. Each limit
refuses the next attempt with a clear error while the daemon goes on serving the others (a
"witness" session that must still read correctly)."""

import errno
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import wstest  # noqa: E402
from harness import check, check_equal, check_errno  # noqa: E402
from fakeprovider import DEFAULT, Dir, File, NO_REPLY  # noqa: E402

suite = harness.Suite("test_limits")
suite.needs_provider = True

CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013
BUSY = 4
# The read budget's tests hold READs at their providers for seconds: they must keep counting.
HOLD_READS = ["--slow-read", "600000"]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def witness(env, daemon, name="witness"):
    fake = env.fake(daemon)
    fake.attach(name, {"w.txt": File(b"witness\n")})
    return fake


def check_witness(daemon, fake, name="witness"):
    check(daemon.alive(), "webfused died")
    data = harness.bounded(lambda: read(os.path.join(daemon.mount_path(name), "w.txt")), 10,
                           "reading the witness")
    check_equal(data, b"witness\n", "witness file")
    check(not fake.closed.is_set(), "the witness was closed (%r, %r)"
          % (fake.close_code, fake.close_reason))


@suite.test
def sessions_limit_refuses_the_next_connection(env):
    daemon = env.start_daemon(extra=["--max-sessions", "2"])
    first = witness(env, daemon)
    second = env.fake(daemon)
    second.attach("second", {"s": File(b"s")})
    third = env.fake(daemon)
    code, reason = third.wait_close(5)
    check_equal((code, reason), (CLOSE_TRY_AGAIN_LATER, "too many sessions (limit 2)"),
                "close of the third connection")
    check_witness(daemon, first)
    second.close()
    harness.wait_unmounted(daemon.mount_path("second"), 10)
    again = env.fake(daemon)
    again.attach("again", {"a": File(b"a")})  # a place is free again


@suite.test
def a_refused_connection_is_dropped_without_waiting_for_its_answer(env):
    """After a refusal the gateway does not wait for the peer's own close frame (it waits only
    after an operator's detach or disconnect): a flood of clients that never answer cannot hold
    sockets for seconds each."""
    daemon = env.start_daemon(extra=["--max-sessions", "1"])
    first = witness(env, daemon)
    ws, _ = wstest.connect("127.0.0.1", daemon.port, "/", subprotocol="webfuse-adapter-server")
    try:
        _, opcode, payload = ws.recv_frame(5)
        check_equal((opcode, int.from_bytes(payload[:2], "big")),
                    (wstest.OP_CLOSE, CLOSE_TRY_AGAIN_LATER), "the refusal")
        _, took = harness.timed(lambda: ws.wait_closed(5))  # never answered
        check(took < 1.0, "the refused connection stayed %.1f s after its close frame" % took)
    finally:
        ws.abort()
    check_witness(daemon, first)


@suite.test
def filesystems_limit_refuses_the_next_attach(env):
    daemon = env.start_daemon(extra=["--max-filesystems", "2"])
    fake = witness(env, daemon)
    fake.attach("two", {"t": File(b"t")})
    answer = fake.add_filesystem("three", {})
    check_equal(answer.get("error", {}).get("code"), BUSY, "third add_filesystem answer %r"
                % answer)
    check(not harness.is_mounted(daemon.mount_path("three")), "three was mounted")
    check_witness(daemon, fake)
    other = env.fake(daemon)
    other.attach("three", {"x": File(b"x")})  # the limit is per session


@suite.test
def pending_limit_holds_further_requests_back(env):
    """Past --max-pending requests in flight, kernel requests wait in their mount until an
    answer frees a slot: nothing fails, the provider is simply not flooded."""
    daemon = env.start_daemon(extra=["--max-pending", "2"])
    other = witness(env, daemon)
    fake = env.fake(daemon)
    # One file per directory: the kernel may serialise lookups within one directory.
    names = ["d%d/f" % i for i in range(4)]
    fake.attach("slow", {"d%d" % i: Dir({"f": File(b"ff")}) for i in range(4)})
    mp = daemon.mount_path("slow")
    for i in range(4):
        os.stat(os.path.join(mp, "d%d" % i))
    held = []
    lock = threading.Lock()
    release = threading.Event()

    def hold(fake_, msg):
        with lock:
            if release.is_set() or msg["params"][2] != "f":
                return DEFAULT
            held.append(msg)
        return NO_REPLY

    fake.handlers["lookup"] = hold
    results = {}

    def stat(name):
        try:
            results[name] = os.stat(os.path.join(mp, name)).st_size
        except OSError as e:
            results[name] = e

    threads = [threading.Thread(target=stat, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    harness.wait_until(lambda: len(held) == 2, 5, what="two lookups at the provider")
    time.sleep(0.5)
    check_equal(len(held), 2, "lookups in flight with --max-pending 2")
    check_witness(daemon, other)  # another session is not held back
    fs = fake.filesystems["slow"]
    with lock:
        first = held[0]
    fake.reply(first, fs.answer("lookup", first["params"]))
    harness.wait_until(lambda: len(held) == 3, 5, what="a third lookup once a slot was free")
    with lock:
        release.set()
        waiting = held[1:]
    for msg in waiting:
        fake.reply(msg, fs.answer("lookup", msg["params"]))
    for t in threads:
        t.join(10)
    check_equal(results, {n: 2 for n in names}, "stat results")


@suite.test
def message_size_limit_closes_that_connection_only(env):
    daemon = env.start_daemon(max_message=2 * 1024 * 1024)
    other = witness(env, daemon)
    big = env.fake(daemon)
    big.send_raw('{"method": "add_filesystem", "params": ["' + "x" * (3 * 1024 * 1024) +
                 '"], "id": 1}')
    code, reason = big.wait_close(10)
    check_equal(code, CLOSE_TOO_BIG, "close code (reason %r)" % reason)
    check_witness(daemon, other)


@suite.test
def path_length_limit_fails_longer_paths(env):
    daemon = env.start_daemon(extra=["--max-path", "32"])
    other = witness(env, daemon)
    src = env.mkdir("src")
    env.start_webfuse2_provider(daemon, "paths", src)
    mp = daemon.mount_path("paths")
    os.mkdir(os.path.join(mp, "d" * 20))  # "/ddd..." is 21 bytes
    check_errno(lambda: os.mkdir(os.path.join(mp, "d" * 20, "e" * 20)), errno.ENAMETOOLONG,
                "mkdir of a 42-byte path")
    check_errno(lambda: open(os.path.join(mp, "f" * 40), "w"), errno.ENAMETOOLONG,
                "create of a 41-byte path")
    check(os.path.isdir(os.path.join(src, "d" * 20)), "the short directory is missing")
    check(not os.path.exists(os.path.join(src, "d" * 20, "e" * 20)), "the long one was made")
    with open(os.path.join(mp, "short"), "w") as f:
        f.write("ok")
    check_witness(daemon, other)


@suite.test
def idle_connection_that_never_attaches_is_closed(env):
    daemon = env.start_daemon(extra=["--idle-timeout", "1"])
    other = witness(env, daemon)
    idle = env.fake(daemon)
    start = time.monotonic()
    code, reason = idle.wait_close(5)
    took = time.monotonic() - start
    check_equal((code, reason), (CLOSE_POLICY, "no filesystem attached within 1 s"),
                "close of the idle connection")
    check(took >= 0.8, "closed after %.2f s, before the idle time" % took)
    time.sleep(1.0)
    check_witness(daemon, other)  # attached in time: never closed
    events = daemon.api_ok("GET", "/api/v1/events?limit=1000")["events"]
    check(any(e["kind"] == "error" and e["detail"] == "no filesystem attached within 1 s"
              for e in events), "no error event for the idle connection")


@suite.test
def reads_in_flight_are_bounded_across_sessions(env):
    """Many streams at once share one budget of read bytes in flight (8 MiB): further reads wait
    in their mounts until answers come, then go on; every byte arrives."""
    check_reads_bounded(env, env.start_daemon(extra=HOLD_READS), 8 << 20)


@suite.test
def read_budget_sets_that_bound(env):
    """--read-budget 2 MiB: the streams keep at most 2 MiB of reads in flight between them."""
    check_reads_bounded(env, env.start_daemon(extra=["--read-budget", str(2 << 20)] + HOLD_READS),
                        2 << 20)


class HeldStreams:
    """One session per name streams an 8 MiB file through its mount while its provider holds
    every READ until release_and_check()."""

    def __init__(self, env, daemon, names):
        self.daemon = daemon
        self.data = os.urandom(8 << 20)
        self.held = []
        self.lock = threading.Lock()
        self.released = False
        self.results = {}
        self.names = names
        for name in names:
            fake = env.fake(daemon)
            fake.attach(name, {"f": File(self.data)})
            fake.handlers["read"] = self.hold
        self.threads = [threading.Thread(target=self.reader, args=(n,), daemon=True)
                        for n in names]
        for t in self.threads:
            t.start()

    def hold(self, fake_, msg):
        with self.lock:
            if self.released:
                return DEFAULT
            self.held.append((fake_, msg))
        return NO_REPLY

    def reader(self, name):
        try:
            self.results[name] = read(os.path.join(self.daemon.mount_path(name), "f"))
        except OSError as e:
            self.results[name] = e

    def held_reads(self):
        """(bytes of the READs held, how many streams they are of)."""
        with self.lock:
            return (sum(msg["params"][4] for _, msg in self.held),
                    len({msg["params"][0] for _, msg in self.held}))

    def release_and_check(self):
        """Answers every READ held; every byte must arrive and the gauges go back to 0."""
        with self.lock:
            self.released = True
            waiting = list(self.held)
        for fake, msg in waiting:
            fake.reply(msg, fake.filesystems[msg["params"][0]].answer("read", msg["params"]))
        for t in self.threads:
            t.join(60)
        for name in self.names:
            got = self.results.get(name)
            check(isinstance(got, bytes) and got == self.data, "%s read %r" % (
                name, got if not isinstance(got, bytes) else "%d other bytes" % len(got)))
        metrics = harness.parse_metrics(self.daemon.api("GET", "/metrics").body.decode())
        check_equal((metrics[("webfuse_read_in_flight_bytes", ())], reads_waiting(self.daemon)),
                    (0, 0), "read bytes in flight and sessions waiting once every read is done")
        check(self.daemon.alive(), "webfused died")


@suite.test
def a_slow_provider_does_not_hold_back_the_reads_of_others(env):
    """READs a provider leaves unanswered stop counting against the read budget after
    --slow-read (100 ms by default): providers that hold the whole budget (slow, distant or hung)
    do not make another provider's reads wait for their answers."""
    daemon = env.start_daemon(timeout=30)
    streams = HeldStreams(env, daemon, ["slow%d" % i for i in range(4)])
    harness.wait_until(lambda: streams.held_reads()[0] >= 7 << 20, 10, what="7 MiB of reads held")
    fast = witness(env, daemon, "fast")
    _, took = harness.timed(lambda: check_witness(daemon, fast, "fast"))
    check(took < 2.0, "a read of another provider took %.1f s behind the held ones" % took)
    streams.release_and_check()


def check_reads_bounded(env, daemon, budget):
    """Twelve sessions stream 8 MiB each while their providers hold every READ: the READs held
    add up to the budget (less than one more READ short of it); once answered, every byte
    arrives and the gauges go back to 0."""
    streams = HeldStreams(env, daemon, ["s%d" % i for i in range(12)])
    harness.wait_until(lambda: streams.held_reads()[0] > 0, 10, what="reads at the providers")
    time.sleep(1.0)  # nothing more may come: the budget is spent
    in_flight, count = streams.held_reads()
    check(in_flight <= budget, "%d bytes of reads in flight at %d providers, over %d"
          % (in_flight, count, budget))
    check(in_flight >= budget - (1 << 20), "only %d bytes of reads in flight: the budget of %d "
          "was not used" % (in_flight, budget))
    streams.release_and_check()


@suite.test
def a_large_read_is_not_starved_by_small_ones(env):
    """Reads wait for the budget in turn: a 1 MiB READ waiting for room goes before the small
    READs that came after it, instead of watching them take each bit of room it frees."""
    daemon = env.start_daemon(extra=HOLD_READS)
    data = os.urandom(8 << 20)
    nibblers = ["nibble%d" % i for i in range(4)]
    lock = threading.Lock()
    held = {}     # filesystem -> READs of it not answered yet, oldest first
    arrived = []  # the filesystem of each READ, in the order they reached the providers

    def hold(fake_, msg):
        with lock:
            held.setdefault(msg["params"][0], []).append((fake_, msg))
            arrived.append(msg["params"][0])
        return NO_REPLY

    def held_bytes(name):
        with lock:
            return sum(msg["params"][4] for _, msg in held.get(name, []))

    for name in ["fill"] + nibblers + ["late"]:
        fake = env.fake(daemon)
        fake.attach(name, {"f%d" % i: File(data) for i in range(3)})
        fake.handlers["read"] = hold

    def stream(name, file):
        try:
            with open(os.path.join(daemon.mount_path(name), file), "rb") as f:
                while f.read(1 << 20):
                    pass
        except OSError:
            pass  # the daemon's shutdown ends it

    def nibble(name):
        """512 KiB at a time, without read-ahead: one READ of that size per call."""
        fd = os.open(os.path.join(daemon.mount_path(name), "f0"), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            offset = 0
            while os.pread(fd, 512 << 10, offset):
                offset += 512 << 10
        except OSError:
            pass  # the daemon's shutdown ends it
        finally:
            os.close(fd)

    # 6 MiB held for good by three streams (2 MiB of read-ahead each), 2 MiB by the nibblers.
    for i in range(3):
        threading.Thread(target=stream, args=("fill", "f%d" % i), daemon=True).start()
    harness.wait_until(lambda: held_bytes("fill") == 6 << 20, 10, what="6 MiB of reads held")
    for name in nibblers:
        threading.Thread(target=nibble, args=(name,), daemon=True).start()
    harness.wait_until(lambda: all(held_bytes(n) == 512 << 10 for n in nibblers), 10,
                       what="a 512 KiB read of every nibbler held")
    threading.Thread(target=stream, args=("late", "f0"), daemon=True).start()
    harness.wait_until(lambda: reads_waiting(daemon) == 1, 10,
                       what="the late stream's READ waiting: the budget is full")
    check_equal(held_bytes("fill"), 6 << 20, "bytes of the streams filling the budget")
    with lock:
        check_equal(arrived.count("late"), 0, "READs of the late stream sent over the budget")
        start = len(arrived)

    # Each answer frees 512 KiB, and its nibbler asks for the next 512 KiB at once: without
    # turns, that READ always fits and the 1 MiB one never does.
    for i in range(8):
        name = nibblers[i % len(nibblers)]
        with lock:
            fake, msg = held[name].pop(0)
            count = len(arrived)
        fake.reply(msg, fake.filesystems[name].answer("read", msg["params"]))
        deadline = time.monotonic() + 1.0
        while len(arrived) == count and time.monotonic() < deadline:
            time.sleep(0.01)
        with lock:
            if "late" in arrived[start:]:
                break
    with lock:
        after = arrived[start:]
    check("late" in after, "the 1 MiB READ waited through 8 answers while the small ones went: "
          "%r" % after)
    check_equal(after[0], "late", "the first READ sent once room was free (then: %r)" % after)
    with lock:
        check_equal(held["late"][0][1]["params"][4], 1 << 20, "size of the late stream's READ")
    check(daemon.alive(), "webfused died")


def reads_waiting(daemon):
    """Sessions whose READ waits for room in the read budget, from /metrics."""
    metrics = harness.parse_metrics(daemon.api("GET", "/metrics").body.decode())
    return metrics[("webfuse_read_waiting_sessions", ())]


class StuckSessions:
    """Four streams keep the read budget full (2 MiB each, held at their providers); then `count`
    more sessions start a stream each, whose 1 MiB READ has to wait, and fill their two slots for
    requests in flight (--max-pending 2) with lookups held in two other filesystems: they can
    send nothing more. seconds_until_streams_read() then answers the four streams' READs."""

    def __init__(self, env, count):
        self.daemon = env.start_daemon(timeout=30, extra=["--max-pending", "2"] + HOLD_READS)
        data = os.urandom(8 << 20)
        self.lock = threading.Lock()
        self.held = []  # (fake, msg) of READs and LOOKUPs not answered yet, oldest first
        self.streams = ["fill%d" % i for i in range(4)]
        self.stuck = ["stuck%d" % i for i in range(count)]
        for name in self.streams:
            fake = env.fake(self.daemon)
            fake.attach(name, {"f": File(data)})
            fake.handlers["read"] = self.hold
        others = []
        for name in self.stuck:
            fake = env.fake(self.daemon)
            fake.attach(name, {"f": File(data)})
            mine = [name + "-a", name + "-b"]  # lookups in one directory come one at a time
            for other in mine:
                fake.attach(other, {})
            others += mine
            fake.handlers["read"] = self.hold
            fake.handlers["lookup"] = lambda f, msg, mine=mine: \
                self.hold(f, msg) if msg["params"][0] in mine else DEFAULT
        for name in self.streams:
            threading.Thread(target=self.stream, args=(name,), daemon=True).start()
        harness.wait_until(lambda: len(self.held_of(self.streams)) == 8, 10,
                           what="8 MiB of reads held")
        for name in self.stuck:
            threading.Thread(target=self.stream, args=(name,), daemon=True).start()
        harness.wait_until(lambda: reads_waiting(self.daemon) == count, 10,
                           what="the READs of %d sessions waiting for room" % count)
        check_equal(self.held_of(self.stuck), [], "READs sent over the budget")
        for name in others:
            threading.Thread(target=self.look_up, args=(name,), daemon=True).start()
        harness.wait_until(lambda: len(self.held_of(others, "lookup")) == len(others), 10,
                           what="the lookups filling the waiting sessions' slots")
        self.others = others

    def hold(self, fake_, msg):
        with self.lock:
            self.held.append((fake_, msg))
        return NO_REPLY

    def held_of(self, names, method="read"):
        with self.lock:
            return [(f, m) for f, m in self.held
                    if m["params"][0] in names and m["method"] == method]

    def take(self, entries):
        with self.lock:
            for entry in entries:
                self.held.remove(entry)
        return entries

    def stream(self, name):
        try:
            with open(os.path.join(self.daemon.mount_path(name), "f"), "rb") as f:
                while f.read(1 << 20):
                    pass
        except OSError:
            pass  # the daemon's shutdown ends it

    def look_up(self, name):
        try:
            os.stat(os.path.join(self.daemon.mount_path(name), "x"))
        except OSError:
            pass

    def release_streams(self):
        for fake, msg in self.take(self.held_of(self.streams)):
            fake.reply(msg, fake.filesystems[msg["params"][0]].answer("read", msg["params"]))

    def seconds_until_streams_read(self, timeout):
        """Answers the streams' READs; returns how long until 4 more of theirs arrived."""
        released = time.monotonic()
        self.release_streams()
        harness.wait_until(lambda: len(self.held_of(self.streams)) >= 4, timeout,
                           what="the streams' next reads")
        return time.monotonic() - released

    def release_lookups(self):
        for fake, msg in self.take(self.held_of(self.others, "lookup")):
            fake.reply(msg, {"error": {"code": 101}})


@suite.test
def a_session_that_cannot_send_holds_back_only_its_own_read(env):
    """A session waiting for the read budget that then cannot send keeps its place in line, but
    the others' reads still go: its turn is a reservation of its READ's size, not a lock."""
    scene = StuckSessions(env, 1)
    waited = scene.seconds_until_streams_read(10)
    # Well within the 5 s a turn lasts: what let them go is not that the turn was taken away.
    check(waited < 4.0, "the streams' reads went only after %.1f s" % waited)
    check_equal(scene.held_of(scene.stuck), [], "READs sent by a session with its slots full")
    # Its place was kept: once its slots are free, its READ goes although the streams want more.
    scene.release_lookups()
    harness.wait_until(lambda: scene.held_of(scene.stuck), 10, what="the stuck session's READ")
    check(scene.daemon.alive(), "webfused died")


@suite.test
def sessions_that_do_not_take_their_turn_lose_it(env):
    """Eight waiting sessions that cannot send reserve the whole budget; 5 s after room for them
    came they lose their turns, and the others' reads go on."""
    scene = StuckSessions(env, 8)
    waited = scene.seconds_until_streams_read(15)
    check(waited >= 4.5, "the streams' reads went after %.1f s, before the stuck sessions' "
          "turns were over" % waited)
    check_equal(scene.held_of(scene.stuck), [], "READs sent by sessions with their slots full")
    check(scene.daemon.alive(), "webfused died")


@suite.test
def a_waiting_read_of_a_mount_that_goes_away_gives_up_its_place(env):
    """A session waiting to read from a mount that is then cut off (its FUSE connection aborted
    on the device) leaves the queue at once, not when room for the read comes."""
    scene = StuckSessions(env, 0)  # four streams keep the budget full
    fake = env.fake(scene.daemon)
    fake.attach("gone", {"f": File(os.urandom(1 << 20))})
    fake.handlers["read"] = scene.hold
    path = scene.daemon.mount_path("gone")
    minor = os.minor(os.stat(path).st_dev)
    threading.Thread(target=scene.stream, args=("gone",), daemon=True).start()
    harness.wait_until(lambda: reads_waiting(scene.daemon) == 1, 10,
                       what="the READ of the mount waiting for room")
    with open("/sys/fs/fuse/connections/%d/abort" % minor, "w") as f:
        f.write("1")
    harness.wait_until(lambda: reads_waiting(scene.daemon) == 0, 5,
                       what="the session of the aborted mount to leave the queue")
    check_equal(len(scene.held_of(scene.streams)), 8, "reads of the streams still held")
    check(scene.daemon.alive(), "webfused died")


def cpu_seconds(pid):
    """User plus system CPU time of a process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@suite.test
def busy_polling_ends_after_the_work_and_at_shutdown(env):
    """After work for a fast provider the loop polls instead of sleeping, but for --busy-poll
    microseconds at most: once the programs are done, webfused takes no CPU; and a shutdown
    while it polls still ends the daemon."""
    daemon = env.start_daemon(extra=["--busy-poll", "10000"])
    src = env.mkdir("src")
    with open(os.path.join(src, "f"), "wb") as f:
        f.write(b"fast")
    env.start_webfuse2_provider(daemon, "fast", src)
    path = os.path.join(daemon.mount_path("fast"), "f")
    for _ in range(500):  # each open and release is a round trip to the provider
        os.close(os.open(path, os.O_RDONLY))
    time.sleep(0.1)
    before = cpu_seconds(daemon.pid)
    time.sleep(1.0)
    idle = cpu_seconds(daemon.pid) - before
    check(idle < 0.1, "webfused used %.2f s of CPU in 1 s after the work" % idle)
    os.close(os.open(path, os.O_RDONLY))
    daemon.signal(signal.SIGTERM)  # within the 10 ms of polling after that open
    daemon.wait(10)
    check_equal(daemon.returncode(), 0, "exit status of webfused stopped while polling")
    check("handles left" not in daemon.log_text(), "the event loop closed with handles left")


if __name__ == "__main__":
    suite.main()
