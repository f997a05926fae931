#!/usr/bin/env python3
"""TLS (issue 6): with --cert/--key the provider port speaks wss:// and the admin port https://,
with a self-signed certificate made here with openssl. Providers and webfusectl trust it with
--ca; without it they refuse the gateway; a plain connection to a TLS port fails cleanly and the
gateway goes on serving."""

import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import wstest  # noqa: E402
from harness import check, check_equal, fail  # noqa: E402
from fakeprovider import File  # noqa: E402

suite = harness.Suite("test_tls")
suite.needs_provider = True
suite.needs_ctl = True

CERT = {}


@suite.setup
def make_certificate(suite_dir):
    """A self-signed certificate for localhost and 127.0.0.1, and an unrelated second one."""
    if not shutil.which("openssl"):
        fail("the openssl command is missing (scripts/install-deps.sh installs it)")
    for name, san in (("device", "DNS:localhost,IP:127.0.0.1"), ("other", "DNS:other.example")):
        cert = os.path.join(suite_dir, name + ".crt")
        key = os.path.join(suite_dir, name + ".key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                        "/CN=webfuse-test", "-addext", "subjectAltName=" + san, "-keyout", key,
                        "-out", cert], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        CERT[name] = (cert, key)


def start(env, extra=()):
    cert, key = CERT["device"]
    return env.start_daemon(extra=["--cert", cert, "--key", key] + list(extra))


def client_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx


def read(path):
    with open(path, "rb") as f:
        return f.read()


@suite.test
def provider_attaches_over_wss_with_ca(env):
    daemon = start(env)
    src = env.mkdir("src")
    with open(os.path.join(src, "f.txt"), "w") as f:
        f.write("over TLS\n")
    env.start_webfuse2_provider(daemon, "secure", src,
                                url="wss://127.0.0.1:%d/secure" % daemon.port,
                                extra=["--ca", CERT["device"][0]])
    path = os.path.join(daemon.mount_path("secure"), "f.txt")
    check_equal(read(path), b"over TLS\n", "file read through the mount")
    with open(os.path.join(daemon.mount_path("secure"), "g.txt"), "w") as f:
        f.write("written back\n")
    check_equal(read(os.path.join(src, "g.txt")), b"written back\n", "file written back")
    json_src = env.mkdir("json")
    env.start_provider(daemon, [("plainjson", json_src)],
                       url="wss://localhost:%d/" % daemon.port,
                       extra=["--ca", CERT["device"][0]])


@suite.test
def provider_refuses_an_untrusted_or_misnamed_certificate(env):
    """No --ca, a --ca of another certificate, a trusted certificate that names another host, and
    ws:// to the TLS port: each connection fails and the provider says why and what to do."""
    src = env.mkdir("src")
    cases = (("device", "wss", [], "the gateway's certificate was refused (self-signed "
              "certificate); if the gateway has a certificate of its own, trust it with --ca FILE"),
             ("device", "wss", ["--ca", CERT["other"][0]],
              "the gateway's certificate was refused (self-signed certificate); %s holds neither "
              "it nor its CA" % CERT["other"][0]),
             ("other", "wss", ["--ca", CERT["other"][0]],
              "the gateway's certificate does not name 127.0.0.1 (IP address mismatch)"),
             ("device", "ws", [], "read failed: the handshake was cut off (a port for wss:// "
              "only, or not a webfuse gateway's provider port?)"))
    for served, scheme, extra, why in cases:
        cert, key = CERT[served]
        daemon = env.start_daemon(extra=["--cert", cert, "--key", key])
        p = env.start_webfuse2_provider(daemon, "secure", src,
                                        url="%s://127.0.0.1:%d/secure" % (scheme, daemon.port),
                                        extra=extra, wait=False)
        check_equal(p.wait(15), 1, "provider status (%s certificate, %r)" % (served, extra))
        check("cannot connect to %s://127.0.0.1:%d/secure: %s"
              % (scheme, daemon.port, why) in p.log_text(), "provider log: %s" % p.log_text())
        check("SSL err" not in p.log_text(), "libwebsockets' own text: %s" % p.log_text())
        check(not harness.is_mounted(daemon.mount_path("secure")), "mounted anyway")
        daemon.stop()
    plain = env.start_daemon()
    p = env.start_webfuse2_provider(plain, "secure", src, wait=False,
                                    url="wss://127.0.0.1:%d/secure" % plain.port)
    check_equal(p.wait(15), 1, "provider status for wss:// to a plain gateway")
    check("the TLS handshake failed (is the port for plain ws://?): connect SSL" in p.log_text(),
          "provider log: %s" % p.log_text())


@suite.test
def python_tls_client_attaches_with_the_self_signed_certificate(env):
    daemon = start(env)
    ctx = client_context(CERT["device"][0])
    fake = env.fake(daemon, ssl_context=ctx, host="localhost")
    fake.attach("viapython", {"p.txt": File(b"python ssl\n")})
    check_equal(read(os.path.join(daemon.mount_path("viapython"), "p.txt")), b"python ssl\n",
                "file read through the mount")
    try:
        wstest.connect("127.0.0.1", daemon.port, "/", timeout=5,
                       ssl_context=client_context(CERT["other"][0]))
        fail("a client trusting another certificate connected")
    except ssl.SSLCertVerificationError:
        pass


@suite.test
def plain_connection_to_tls_port_fails_cleanly(env):
    daemon = start(env)
    witness = env.fake(daemon, ssl_context=client_context(CERT["device"][0]), host="localhost")
    witness.attach("witness", {"w": File(b"still here\n")})
    # A plain websocket handshake: the gateway drops the connection at once (no answer, no wait
    # for a timeout on either side).
    started = time.monotonic()
    try:
        ws, _ = wstest.connect("127.0.0.1", daemon.port, "/", timeout=5)
        ws.abort()
        fail("a plain websocket handshake succeeded on the TLS port")
    except (wstest.Closed, ConnectionResetError, BrokenPipeError):
        pass  # closed, or reset, during the handshake
    check(time.monotonic() - started < 2, "the plain handshake was dropped only after %.2f s"
          % (time.monotonic() - started))
    # Plain HTTP and bytes that are not TLS at all: dropped at once, nothing answered.
    for garbage in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00not TLS\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as s:
            s.sendall(garbage)
            s.settimeout(2)
            try:
                answer = s.recv(100)
            except ConnectionResetError:
                answer = b""
            except socket.timeout:
                fail("the gateway kept a connection that sent %r open" % garbage)
            check_equal(answer, b"", "the gateway's answer to %r" % garbage)
    check(daemon.alive(), "webfused died")
    check_equal(read(os.path.join(daemon.mount_path("witness"), "w")), b"still here\n",
                "the witness mount")


@suite.test
def admin_api_speaks_https(env):
    daemon = start(env)
    ctx = client_context(CERT["device"][0])
    conn = http.client.HTTPSConnection("127.0.0.1", daemon.admin_port, context=ctx, timeout=10)
    conn.request("GET", "/api/v1/sessions", headers={"Authorization": "Bearer " + daemon.token()})
    resp = conn.getresponse()
    check_equal(resp.status, 200, "https sessions status")
    resp.read()
    conn.close()

    ctl = harness.binary("WEBFUSECTL", "webfusectl")
    url = "https://127.0.0.1:%d" % daemon.admin_port
    base = [ctl, "--url", url, "--token-file", daemon.token_file]
    ok = subprocess.run(base + ["--ca", CERT["device"][0], "sessions"], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, timeout=30)
    check_equal(ok.returncode, 0, "webfusectl over https (%s)" % ok.stderr)
    refused = subprocess.run(base + ["sessions"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             timeout=30)
    check_equal(refused.returncode, 3, "webfusectl without --ca")
    check(b"not trusted" in refused.stderr, "its message: %r" % refused.stderr)
    missing = subprocess.run(base + ["--ca", env.path("no-such.pem"), "sessions"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    check_equal(missing.returncode, 2, "webfusectl with a --ca file that is not there")
    check(b"cannot read --ca" in missing.stderr and b"No such file" in missing.stderr,
          "its message: %r" % missing.stderr)
    plain = subprocess.run([ctl, "--url", "http://127.0.0.1:%d" % daemon.admin_port, "health"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    check_equal(plain.returncode, 3, "plain http to the https admin port")
    check(b"(does the admin API take https://?)" in plain.stderr, "its message: %r" % plain.stderr)
    check(daemon.alive(), "webfused died")


@suite.test
def webfusectl_timeout_holds_against_a_dripping_https_server(env):
    """--timeout bounds the whole request over TLS too: a server that sends a header line (one
    TLS record) every half second must not keep webfusectl --timeout 2."""
    cert, key = CERT["device"]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    host, port = harness.dripping_server(context)
    start = time.monotonic()
    p = subprocess.run([harness.binary("WEBFUSECTL", "webfusectl"), "--url",
                        "https://%s:%d" % (host, port), "--ca", cert, "--timeout", "2", "health"],
                       capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - start
    check_equal(p.returncode, 3, "exit status against a dripping server (%r)" % p.stderr)
    check(elapsed < 4, "--timeout 2 held %.1f s" % elapsed)


@suite.test
def separate_admin_certificate_and_unreadable_files(env):
    cert, key = CERT["device"]
    other_cert, other_key = CERT["other"]
    daemon = env.start_daemon(extra=["--cert", cert, "--key", key, "--admin-cert", other_cert,
                                     "--admin-key", other_key])
    ctx = client_context(other_cert)
    ctx.check_hostname = False  # the other certificate names other.example
    conn = http.client.HTTPSConnection("127.0.0.1", daemon.admin_port, context=ctx, timeout=10)
    conn.request("GET", "/healthz")
    check_equal(conn.getresponse().status, 200, "healthz over the admin certificate")
    conn.close()
    bad = env.start_daemon(extra=["--cert", env.path("missing.crt"), "--key", key], wait=False)
    check_equal(bad.wait(10), 2, "status of a start without its certificate")
    check("cannot read --cert" in bad.log_text(), "its log: %s" % bad.log_text())
    nokey = env.start_daemon(extra=["--cert", cert], wait=False)
    check_equal(nokey.wait(10), 2, "status of --cert without --key")



@suite.test
def check_config_names_a_pair_that_cannot_serve(env):
    """--check-config loads each certificate with its key as the real start does: a key of
    another certificate, files that are not PEM, and a key with a passphrase are each named."""
    cert, key = CERT["device"]
    other_cert, other_key = CERT["other"]
    garbage = env.path("garbage.pem")
    with open(garbage, "w") as f:
        f.write("not a certificate\n")
    locked = env.path("locked.key")
    subprocess.run(["openssl", "pkey", "-in", key, "-aes128", "-passout", "pass:secret", "-out",
                    locked], check=True, capture_output=True, timeout=30)
    cases = (
        (["--cert", cert, "--key", other_key], "--key %s is not the key of --cert %s"
         % (other_key, cert)),
        (["--cert", garbage, "--key", key], "--cert %s is not a PEM certificate" % garbage),
        (["--cert", cert, "--key", cert], "--key %s is not a PEM private key" % cert),
        (["--cert", cert, "--key", locked], "--key %s is not a PEM private key without passphrase"
         % locked),
        (["--cert", cert, "--key", key, "--admin-cert", other_cert, "--admin-key", key],
         "--admin-key %s is not the key of --admin-cert %s" % (key, other_cert)),
    )
    webfused = harness.binary("WEBFUSED", "webfused")
    for args, message in cases:
        done = subprocess.run([webfused, "--no-config", "--check-config"] + args,
                              capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
        check_equal(done.returncode, 2, "--check-config %r" % args)
        check(message in done.stderr, "for %r: %r" % (args, done.stderr))
    valid = subprocess.run([webfused, "--no-config", "--check-config", "--cert", cert, "--key",
                            key], capture_output=True, text=True, timeout=10)
    check_equal(valid.returncode, 0, "a matching pair (%s)" % valid.stderr)
    bad = env.start_daemon(extra=["--cert", cert, "--key", other_key], wait=False)
    check_equal(bad.wait(10), 2, "status of a start with a key of another certificate")
    check("is not the key of" in bad.log_text(), "its log: %s" % bad.log_text())

@suite.test
def both_ports_speak_http_1_1_only(env):
    """Over TLS neither port offers HTTP/2 (ALPN): as without TLS, where upgrades to it are
    refused, no client reaches libwebsockets' HTTP/2 paths."""
    daemon = start(env)
    ctx = client_context(CERT["device"][0])
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    for port in (daemon.port, daemon.admin_port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                check_equal(tls.selected_alpn_protocol(), "http/1.1", "ALPN of port %d" % port)
    check(daemon.alive(), "webfused died")


if __name__ == "__main__":
    suite.main()
