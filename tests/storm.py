"""Load generator for storm tests: several OS processes, each with many concurrent HTTP connections.

Kept free of Django so spawned worker processes start fast and share nothing with the test process.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time

import aiohttp


async def _fire(
    base_url: str, attempts: list[tuple[int, str]], body: dict, start_at: float, concurrency: int, persist: float
):
    results = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Connect before the opening second, as a bot would, so the storm hits all at once.
        await asyncio.sleep(max(0.0, start_at - time.time()))

        async def one(index: int, token: str):
            # With ``persist``, a buyer told 503 (+ Retry-After) tries again, as the page does, until
            # a real answer or ``persist`` seconds after the opening; each 503 is recorded on the way.
            while True:
                try:
                    async with session.post(
                        f"{base_url}/api/war", json=body, headers={"Authorization": f"Token {token}"}
                    ) as response:
                        result = (index, response.status, json.loads(await response.text()))
                except (TimeoutError, aiohttp.ClientError) as exc:
                    result = (index, 0, {"code": f"client_error: {exc!r}"})
                if result[1] != 503 or time.time() > start_at + persist:
                    results.append(result)
                    return
                results.append((index, 503, {**result[2], "at": time.time()}))
                await asyncio.sleep(0.25)

        await asyncio.gather(*(one(i, t) for i, t in attempts))
    return results


def _worker(args):
    return asyncio.run(_fire(*args))


def storm(
    base_url: str,
    attempts: list[tuple[int, str]],
    body: dict,
    *,
    start_at: float,
    processes: int = 4,
    concurrency: int = 64,
    persist: float = 0.0,
) -> list[tuple[int, int, dict]]:
    """Send every (user index, token) attempt; returns (user index, HTTP status, JSON body) per answer."""
    chunks = [attempts[i::processes] for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.map(_worker, [(base_url, chunk, body, start_at, concurrency, persist) for chunk in chunks])
    return [row for part in parts for row in part]
