#!/usr/bin/env python3
"""webfused --docroot: static files over HTTP at / of the provider port, beside the providers'
websockets: types, index.html, 404, no way out of the directory, upgrades still work, the admin
port serves no files, and a bad directory is refused at start."""

import http.client
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check, check_equal  # noqa: E402

suite = harness.Suite("test_docroot")
SECRET = b"this file lies outside the document root"


def get(port, path, headers=None):
    """(status, content type, body) of one GET, the path sent exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


def make_docroot(env):
    root = env.mkdir("www")
    os.makedirs(os.path.join(root, "sub"))
    content = {
        "index.html": b"<!doctype html><title>index</title>",
        "app.js": b"import './lib.mjs';",
        "lib.mjs": b"export const x = 1;",
        "style.css": b"body { color: black; }",
        "logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        "logo.png": b"\x89PNG\r\n\x1a\n",
        "data.bin": bytes(range(256)),
        "sub/index.html": b"<p>sub</p>",
    }
    for name, data in content.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    with open(env.path("secret.txt"), "wb") as f:
        f.write(SECRET)
    return root, content


@suite.test
def files_are_served_with_their_types_and_index_html(env):
    root, content = make_docroot(env)
    daemon = env.start_daemon(extra=["--docroot", root])
    types = {"index.html": "text/html", "app.js": "text/javascript", "lib.mjs": "text/javascript",
             "style.css": "text/css", "logo.svg": "image/svg+xml", "logo.png": "image/png",
             "data.bin": "application/octet-stream", "sub/index.html": "text/html"}
    for name, ctype in types.items():
        status, got_type, body = get(daemon.port, "/" + name)
        check_equal(status, 200, "status of /%s" % name)
        check_equal(got_type.split(";")[0], ctype, "type of /%s" % name)
        check_equal(body, content[name], "body of /%s" % name)
    for path, name in (("/", "index.html"), ("/sub/", "sub/index.html"),
                       ("/sub/../index.html", "index.html"), ("/./app.js", "app.js")):
        status, _, body = get(daemon.port, path)
        check_equal((status, body), (200, content[name]), "GET %s" % path)
    for path in ("/missing.html", "/sub/nothing", "/upload"):
        status, _, body = get(daemon.port, path)
        check_equal(status, 404, "status of %s" % path)


@suite.test
def no_request_reaches_outside_the_docroot(env):
    root, _ = make_docroot(env)
    daemon = env.start_daemon(extra=["--docroot", root])
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt",
                 "/..%2fsecret.txt", "/sub/../../secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt",
                 "/..\\secret.txt", "/" + "../" * 20 + "etc/passwd", "//etc/passwd",
                 "/%2fetc%2fpasswd", "/sub/..%2f..%2fsecret.txt"):
        status, _, body = get(daemon.port, path)
        check(status != 200, "GET %s answered 200: %r" % (path, body[:80]))
        check(SECRET not in body and b"root:" not in body, "GET %s leaked a file" % path)
    check(daemon.alive(), "webfused died")


@suite.test
def providers_still_connect_on_the_same_port(env):
    root, content = make_docroot(env)
    daemon = env.start_daemon(extra=["--docroot", root])
    src = env.mkdir("src")
    with open(os.path.join(src, "hello.txt"), "w") as f:
        f.write("through the websocket")
    env.start_webfuse2_provider(daemon, "index.html", src, read_only=True)
    with open(os.path.join(daemon.mount_path("index.html"), "hello.txt")) as f:
        check_equal(f.read(), "through the websocket", "file read through the mount")
    env.start_provider(daemon, [("legacy", src)])
    with open(os.path.join(daemon.mount_path("legacy"), "hello.txt")) as f:
        check_equal(f.read(), "through the websocket", "file read through the JSON provider")
    status, _, body = get(daemon.port, "/index.html")
    check_equal((status, body), (200, content["index.html"]), "the page while providers are on")


@suite.test
def without_docroot_nothing_is_served_and_admin_port_serves_no_files(env):
    root, _ = make_docroot(env)
    plain = env.start_daemon()
    status, _, body = get(plain.port, "/index.html")
    check(status != 200, "webfused without --docroot served /index.html")
    with_root = env.start_daemon(extra=["--docroot", root])
    status, _, body = get(with_root.admin_port, "/index.html",
                          {"Authorization": "Bearer " + with_root.token()})
    check_equal(status, 404, "the admin port asked for /index.html")


@suite.test
def docroot_that_is_not_a_directory_is_refused(env):
    root, _ = make_docroot(env)
    binary = harness.binary("WEBFUSED", "webfused")
    for bad in (env.path("nothing-here"), os.path.join(root, "index.html")):
        done = subprocess.run([binary, "--no-config", "--docroot", bad, "--no-admin", "--port",
                               str(harness.free_port()), "--mount-root", env.mkdir("r")],
                              capture_output=True, text=True, timeout=10)
        check_equal(done.returncode, 2, "exit status for --docroot %s" % bad)
        check("--docroot must be a readable directory" in done.stderr, "error: %r" % done.stderr)
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10).stdout
    check("--docroot DIR" in out, "--help does not mention --docroot")


if __name__ == "__main__":
    suite.needs_provider = True
    suite.main()
