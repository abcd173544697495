#!/usr/bin/env python3
"""The web inspector in a real browser: headless Chromium driven by chromedriver (W3C
WebDriver over HTTP, standard library only) against a real Redis, server, client and the
demo app. Sends webhooks, sees them appear and get delivered live, opens a dead letter,
replays it and sees the copy delivered, purges another after the confirmation, and saves a
screenshot. Run through scripts/inspector-e2e.sh, which installs the browser and builds.

Usage: inspector-e2e.py BIN DEMO_SINK SCREENSHOT
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BIN, SINK, SCREENSHOT = sys.argv[1:4]
KEY = "e2e-key"
ADMIN_TOKEN = "e2e-admin-token-5f1c"
WAIT = 20.0
procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    end = time.time() + WAIT
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


def start(args, env=None, log=None):
    p = subprocess.Popen(args, env=env, stdout=log or subprocess.DEVNULL, stderr=log or subprocess.DEVNULL)
    procs.append(p)
    return p


def http(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if isinstance(body, (dict, list)):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def until(what, check):
    end = time.time() + WAIT
    while time.time() < end:
        try:
            v = check()
            if v:
                return v
        except (KeyError, IndexError, TypeError, AttributeError):
            pass  # not there yet
        time.sleep(0.1)
    raise SystemExit(f"FAILED: {what} (waited {WAIT:.0f} s)")


class Browser:
    def __init__(self, driver):
        self.base = f"http://127.0.0.1:{driver}"
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": shutil.which("chromium") or "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,900"],
            },
        }}}
        status, body = http("POST", self.base + "/session", caps)
        if status != 200:
            raise SystemExit(f"chromedriver: {status} {body[:500]!r}")
        self.session = json.loads(body)["value"]["sessionId"]

    def cmd(self, method, path, body=None):
        status, raw = http(method, f"{self.base}/session/{self.session}{path}", body if body is not None else ({} if method == "POST" else None))
        value = json.loads(raw)["value"] if raw else None
        if status != 200:
            raise SystemExit(f"webdriver {method} {path}: {status} {value}")
        return value

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def click(self, css):
        elem = self.cmd("POST", "/element", {"using": "css selector", "value": css})
        self.cmd("POST", f"/element/{list(elem.values())[0]}/click")

    def errors(self):
        try:
            logs = self.cmd("POST", "/se/log", {"type": "browser"})
        except SystemExit:
            return []  # this chromedriver keeps no log
        return [l["message"] for l in logs if l.get("level") == "SEVERE"]

    def quit(self):
        http("DELETE", f"{self.base}/session/{self.session}")


def rows(b, status=None, tag=None):
    return b.js("""
        const [status, tag] = arguments;
        return [...document.querySelectorAll('#events tbody tr')]
          .filter((tr) => !status || tr.dataset.status === status)
          .filter((tr) => !tag || (tr.querySelector('.tag') || {}).textContent === tag)
          .map((tr) => tr.dataset.id);""", status, tag)


def main():
    work = tempfile.mkdtemp(prefix="inspector-e2e-")
    log = open(os.path.join(work, "processes.log"), "wb")
    ports = {k: free_port() for k in ("redis", "server", "sadmin", "cadmin", "sink", "driver")}
    start(["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1", "--dir", work,
           "--save", "", "--appendonly", "yes"], log=log)
    wait_port(ports["redis"])
    env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{ports['redis']}", RUST_LOG="info",
               RELAY_STREAM="e2e", RELAY_DLQ_STREAM="e2e:dlq")
    start([BIN, "server"], dict(env, RELAY_LISTEN=f"127.0.0.1:{ports['server']}", RELAY_API_KEYS=KEY,
                                RELAY_ADMIN_LISTEN=f"127.0.0.1:{ports['sadmin']}",
                                RELAY_ADMIN_TOKEN=ADMIN_TOKEN), log)
    start([SINK, f"127.0.0.1:{ports['sink']}", "unused-secret"], log=log)
    start([BIN, "client"], dict(env, RELAY_TARGET_URL=f"http://127.0.0.1:{ports['sink']}/hook",
                                RELAY_ADMIN_LISTEN=f"127.0.0.1:{ports['cadmin']}"), log)
    for p in ("server", "sadmin", "sink", "cadmin"):
        wait_port(ports[p])
    start(["chromedriver", f"--port={ports['driver']}"], log=log)
    wait_port(ports["driver"])
    b = Browser(ports["driver"])
    try:
        run(b, ports)
    except BaseException:
        # What the page showed when it failed, for the log.
        try:
            print("page text at the failure:\n" + b.js("return document.body.innerText"), file=sys.stderr)
            with open(SCREENSHOT + ".failed.png", "wb") as f:
                f.write(base64.b64decode(b.cmd("GET", "/screenshot")))
        except BaseException:
            pass
        sys.stderr.write(open(os.path.join(work, "processes.log"), errors="replace").read()[-3000:])
        raise
    finally:
        errors = b.errors()
        b.quit()
        log.close()
    if errors:
        raise SystemExit("FAILED: the browser logged errors:\n" + "\n".join(errors))
    print(f"inspector e2e: OK (screenshot {SCREENSHOT})")


def send(ports, body, source="whatsapp"):
    status, raw = http("POST", f"http://127.0.0.1:{ports['server']}/webhook/{source}", body.encode(),
                       {"X-API-Key": KEY, "Content-Type": "application/json"})
    assert status == 200, (status, raw)
    return json.loads(raw)["id"]


def run(b, ports):
    # The server's listener has a token: the page loads, asks for it, then works.
    b.cmd("POST", "/url", {"url": f"http://127.0.0.1:{ports['sadmin']}/"})
    until("the server's page loads", lambda: "server" in b.js("return document.getElementById('role')?.textContent"))
    until("the page asks for the token", lambda: not b.js("return document.getElementById('token-form').hidden"))
    b.js("document.getElementById('token').value = arguments[0];"
         "document.getElementById('token-form').requestSubmit();", ADMIN_TOKEN)
    until("the server's live feed connects with the token",
          lambda: b.js("return document.getElementById('live')?.textContent") == "live")
    # Reading the log empties it: the 401s that made the page ask are the only errors so far.
    early = b.errors()
    assert all("401 (Unauthorized)" in e for e in early), early
    print("  server page: asked for the admin token, then connected")
    # The client's page: live before anything is sent.
    b.cmd("POST", "/url", {"url": f"http://127.0.0.1:{ports['cadmin']}/"})
    until("the live feed connects", lambda: b.js("return document.getElementById('live')?.textContent") == "live")
    ok = [send(ports, json.dumps({"object": "whatsapp_business_account", "n": i}), "whatsapp") for i in range(3)]
    ok.append(send(ports, json.dumps({"object": "page", "n": 3}), "messenger"))
    poison = send(ports, json.dumps({"type": "reject", "n": 4}))
    until("4 webhooks delivered, live", lambda: set(ok) <= set(rows(b, "delivered")))
    until("the poison webhook dead, live", lambda: poison in rows(b, "dead"))
    print("  live: 4 delivered and 1 dead appeared without a reload")

    # Open the dead one: its attempt, the app's answer, the body pretty-printed.
    b.click(f'#events tr[data-id="{poison}"]')
    until("the detail of the dead letter", lambda: b.js("return document.getElementById('d-status')?.textContent") == "dead")
    detail = b.js("return document.getElementById('detail')?.innerText")
    for want in ["422", "rejected by the demo app", '"type": "reject"', "X-Relay-Id", "Replay dead letter"]:
        assert want in detail, (want, detail)
    b.click("#a-replay")
    until("the replay reported", lambda: "Replayed dead letter" in b.js("return document.getElementById('message')?.textContent"))
    copy = until("the replayed copy delivered, live", lambda: rows(b, "delivered", "replay"))
    print(f"  replayed the dead letter: copy {copy[0]} delivered")
    b.click(f'#events tr[data-id="{copy[0]}"]')
    until("the copy's detail", lambda: "X-Relay-Replay-Of" in b.js("return document.getElementById('detail')?.innerText"))

    # Filters, then a purge after the confirmation.
    b.js("const s = document.getElementById('f-source'); s.value = 'messenger'; s.dispatchEvent(new Event('change'));")
    until("the source filter", lambda: rows(b) == [ok[3]])
    # Back to all sources, with the listing's answer held until a webhook has arrived and
    # died live meanwhile: the listing predates it, and must not wipe it out.
    b.js(
        "window.__held = new Promise((r) => { window.__release = r; });"
        "const f = window.fetch;"
        "window.fetch = (u, o) => String(u).startsWith('/events?')"
        " ? f(u, o).then((r) => window.__held.then(() => r)) : f(u, o);"
        "const s = document.getElementById('f-source'); s.value = ''; s.dispatchEvent(new Event('change'));"
    )
    second = send(ports, json.dumps({"type": "reject", "n": 5}))
    until("the second one dead on the live feed", lambda: b.js(f"return events.get('{second}')?.status") == "dead")
    b.js("window.__release();")
    until("a second dead letter, listed after the held listing", lambda: second in rows(b, "dead"))
    b.click(f'#events tr[data-id="{second}"]')
    until("its detail", lambda: b.js("return document.getElementById('d-title')?.textContent").startswith(second))
    b.click("#a-purge")
    text = b.cmd("GET", "/alert/text")
    assert "for good" in text, text
    b.cmd("POST", "/alert/accept")
    until("the purge reported", lambda: "Purged dead letter" in b.js("return document.getElementById('message')?.textContent"))
    status, raw = http("GET", f"http://127.0.0.1:{ports['cadmin']}/dlq")
    assert status == 200 and json.loads(raw)["entries"] == [], raw
    print("  purged the second dead letter after the confirmation: DLQ empty")

    # The picture for the README: the replayed copy opened.
    b.click(f'#events tr[data-id="{copy[0]}"]')
    until("the copy's detail again", lambda: b.js("return document.getElementById('d-title')?.textContent").startswith(copy[0]))
    png = base64.b64decode(b.cmd("GET", "/screenshot"))
    with open(SCREENSHOT, "wb") as f:
        f.write(png)


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
