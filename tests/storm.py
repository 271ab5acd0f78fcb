"""Load generator for storm tests: several OS processes, each with many concurrent HTTP connections.

Kept free of Django so spawned worker processes start fast and share nothing with the test process.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time

import aiohttp


async def _fire(base_url: str, attempts: list[tuple[int, str]], body: dict, start_at: float, concurrency: int):
    results = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Connect before the opening second, as a bot would, so the storm hits all at once.
        await asyncio.sleep(max(0.0, start_at - time.time()))

        async def one(index: int, token: str):
            try:
                async with session.post(
                    f"{base_url}/api/war", json=body, headers={"Authorization": f"Token {token}"}
                ) as response:
                    results.append((index, response.status, json.loads(await response.text())))
            except (TimeoutError, aiohttp.ClientError) as exc:
                results.append((index, 0, {"code": f"client_error: {exc!r}"}))

        await asyncio.gather(*(one(i, t) for i, t in attempts))
    return results


def _worker(args):
    base_url, attempts, body, start_at, concurrency = args
    return asyncio.run(_fire(base_url, attempts, body, start_at, concurrency))


def storm(
    base_url: str,
    attempts: list[tuple[int, str]],
    body: dict,
    *,
    start_at: float,
    processes: int = 4,
    concurrency: int = 64,
) -> list[tuple[int, int, dict]]:
    """Send every (user index, token) attempt; returns (user index, HTTP status, JSON body) per attempt."""
    chunks = [attempts[i::processes] for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.map(_worker, [(base_url, chunk, body, start_at, concurrency) for chunk in chunks])
    return [row for part in parts for row in part]
