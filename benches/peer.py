"""The yardstick for `cargo bench --bench sweep`: the same sweep as a short Python script.

It refreshes every due connection of its own SQLite file at the same token endpoint, with what
a careful script would do and no more: AES-GCM sealed tokens, one history row per check,
`synchronous = FULL`, and the results of a batch committed together with `executemany`. It has
none of credwatch's crash-safety rules (no attempt on disk before the call, no leases).

    python3 benches/peer.py DB TOKEN_URL CONNECTIONS CONCURRENCY

Seeds CONNECTIONS rows (not timed), sweeps them, and prints one JSON line: checks, seconds,
cpu_seconds (this process), written_bytes (what the sweep wrote to files: the kernel's count of
blocks it dirtied), database bytes. Needs aiohttp, uvloop and cryptography.
"""

import asyncio
import json
import os
import resource
import sqlite3
import sys
import time

import aiohttp
import uvloop
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

BATCH = 2000


def open_db(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS connections (
            id INTEGER PRIMARY KEY, access BLOB NOT NULL, refresh BLOB NOT NULL,
            expires_at INTEGER, generation INTEGER NOT NULL DEFAULT 0,
            next_check_at INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'healthy');
        CREATE INDEX IF NOT EXISTS due ON connections (next_check_at);
        CREATE TABLE IF NOT EXISTS checks (
            id INTEGER PRIMARY KEY, connection_id INTEGER NOT NULL, at INTEGER NOT NULL,
            status INTEGER, category TEXT NOT NULL, latency_ms INTEGER NOT NULL);
        CREATE INDEX IF NOT EXISTS checks_by_connection ON checks (connection_id, at);
        """
    )
    return db


def seal(aead, plain):
    nonce = os.urandom(12)
    return nonce + aead.encrypt(nonce, plain.encode(), None)


def unseal(aead, sealed):
    return aead.decrypt(sealed[:12], sealed[12:], None).decode()


def seed(db, aead, n):
    past = int(time.time()) - 7200
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO connections (access, refresh, expires_at, next_check_at) VALUES (?, ?, ?, ?)",
        (
            (seal(aead, f"seed-at-{i}-0123456789abcdef"), seal(aead, f"seed-rt-{i}-0123456789abcdef"), past, past)
            for i in range(n)
        ),
    )
    db.execute("COMMIT")


async def sweep(db, aead, url, concurrency):
    auth = aiohttp.BasicAuth("bench", "bench-secret")
    limit = asyncio.Semaphore(concurrency)
    checks = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def check(row):
            cid, refresh = row
            started = time.monotonic()
            async with limit:
                form = {"grant_type": "refresh_token", "refresh_token": unseal(aead, refresh)}
                async with http.post(url, data=form, auth=auth) as r:
                    status, body = r.status, await r.json(content_type=None)
            now = int(time.time())
            latency = int((time.monotonic() - started) * 1000)
            tokens = (
                seal(aead, body["access_token"]),
                seal(aead, body["refresh_token"]),
                now + int(body["expires_in"]),
                now + 3600,
                cid,
            )
            return tokens, (cid, now, status, "healthy", latency)

        while True:
            now = int(time.time())
            rows = db.execute(
                "SELECT id, refresh FROM connections WHERE next_check_at <= ? AND status = 'healthy' "
                "ORDER BY next_check_at LIMIT ?",
                (now, BATCH),
            ).fetchall()
            if not rows:
                return checks
            done = await asyncio.gather(*(check(r) for r in rows))
            db.execute("BEGIN")
            db.executemany(
                "UPDATE connections SET access = ?, refresh = ?, expires_at = ?, next_check_at = ?, "
                "generation = generation + 1 WHERE id = ?",
                (t for t, _ in done),
            )
            db.executemany(
                "INSERT INTO checks (connection_id, at, status, category, latency_ms) VALUES (?, ?, ?, ?, ?)",
                (h for _, h in done),
            )
            db.execute("COMMIT")
            checks += len(done)


def main():
    path, url, n, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    steady = len(sys.argv) > 5 and sys.argv[5] == "steady"
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    db = open_db(path)
    seed(db, aead, n)
    if steady:
        # A second sweep, over connections due in the order the first left them.
        uvloop.run(sweep(db, aead, url, concurrency))
        db.execute("UPDATE connections SET next_check_at = next_check_at - 7200, expires_at = expires_at - 7200")
    cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    written = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_oublock * 512
    cpu_before, written_before, started = cpu(), written(), time.monotonic()
    checks = uvloop.run(sweep(db, aead, url, concurrency))
    seconds, cpu_seconds = time.monotonic() - started, cpu() - cpu_before
    written_bytes = written() - written_before
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    print(json.dumps({"checks": checks, "seconds": seconds, "cpu_seconds": cpu_seconds,
                      "written_bytes": written_bytes, "database_bytes": size}))


if __name__ == "__main__":
    main()
