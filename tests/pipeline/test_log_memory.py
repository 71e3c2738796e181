"""The durable log's own memory: SQLite's page cache stays small however many rows pass through the log (the log
appends at the end and deletes at the front, so a large cache holds pages nobody reads again). SQLite's memory is
read with sqlite3_status64 in a child process of its own (the counter is per process). Nothing here is timed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import asyncio, ctypes, json, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from gateway.store.config import StoreConfig
from gateway.store.log import DurableLog
from tests.pipeline.helpers import reading

def sqlite_memory():
    lib = ctypes.CDLL("libsqlite3.so.0")
    cur, high = ctypes.c_int64(), ctypes.c_int64()
    lib.sqlite3_status64(0, ctypes.byref(cur), ctypes.byref(high), 0)  # SQLITE_STATUS_MEMORY_USED
    return cur.value, high.value

async def main():
    log = DurableLog(Path({path!r}), StoreConfig(durability="normal"))
    await log.open(["sink"])
    task = asyncio.create_task(log.run())
    n = 0
    for _ in range(120):
        for _ in range(100):  # a commit of 100 polls of 50 values, as at 20 devices x 50 registers
            values = {{f"c{{i}}": float(n + i) for i in range(50)}}
            log.append(reading(f"d{{n % 20}}", 1_767_225_600_000 + n * 10, values))
            n += 1
        await log.flush()
    task.cancel()
    await log.close()
    print(json.dumps({{"polls": n, "memory": sqlite_memory()}}))

asyncio.run(main())
"""


def test_sqlite_page_cache_stays_small_while_rows_pass_through(tmp_path: Path) -> None:
    code = CHILD.format(root=str(ROOT), path=str(tmp_path / "log.sqlite"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    _, high = out["memory"]
    assert out["polls"] == 12_000
    # 12,000 polls are ~50 MB of rows; SQLite may keep a small page cache (~0.5 MB), not megabytes of them
    assert high < 1_500_000, f"SQLite held {high / 1e6:.2f} MB at its peak"
