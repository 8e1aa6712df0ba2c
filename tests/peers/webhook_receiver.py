"""A webhook receiver for credwatch's tests: verifies every delivery with the `standardwebhooks`
package (an implementation that is not credwatch's) and records what it accepted.

    python webhook_receiver.py PORT SECRET

POST /hook       a delivery: 204 when its signature verifies (recorded), 400 when it does not.
                 How it answers a good one follows the mode: "ok", "fail" (500) or "hang"
                 (answers after 30 s), so tests can make it fail and recover.
POST /mode       the body is the new mode.
POST /verify     like /hook, but only says whether the signature verifies; records nothing.
GET  /received   every delivery accepted and answered 204, in arrival order: {"id", "body", and
                 as sent: "raw", "timestamp", "signature"}.
GET  /hits       how many verified deliveries arrived, whatever the answer.
GET  /rejected   how many deliveries failed verification.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

PORT = int(sys.argv[1])
HOOK = Webhook(sys.argv[2])
state = {"mode": "ok", "received": [], "rejected": 0, "hits": 0}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def verified(self, body):
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            HOOK.verify(body, headers)
            return True
        except Exception:
            return False

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/mode":
            with lock:
                state["mode"] = body.decode()
            return self.answer(204)
        if self.path == "/verify":
            return self.answer(204 if self.verified(body) else 400)
        if self.path != "/hook":
            return self.answer(404)
        if not self.verified(body):
            with lock:
                state["rejected"] += 1
            return self.answer(400)
        with lock:
            mode = state["mode"]
            state["hits"] += 1
        if mode == "fail":
            return self.answer(500, b"down for maintenance")
        if mode == "hang":
            time.sleep(30)
            return self.answer(503)
        with lock:
            state["received"].append(
                {
                    "id": self.headers["webhook-id"],
                    "body": json.loads(body),
                    "raw": body.decode(),
                    "timestamp": self.headers["webhook-timestamp"],
                    "signature": self.headers["webhook-signature"],
                }
            )
        self.answer(204)

    def do_GET(self):
        with lock:
            if self.path == "/received":
                return self.answer(200, json.dumps(state["received"]).encode())
            if self.path == "/hits":
                return self.answer(200, str(state["hits"]).encode())
            if self.path == "/rejected":
                return self.answer(200, str(state["rejected"]).encode())
        self.answer(404)


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print(f"webhook receiver listening on {PORT}", flush=True)
server.serve_forever()
