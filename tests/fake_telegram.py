"""A fake Telegram Bot API server on 127.0.0.1, for tests and for trying the bot without Telegram.

It speaks enough of the Bot API for aiogram (``/bot<token>/<method>``, form or JSON bodies): getMe,
sendMessage, getUpdates (long polling), answerCallbackQuery, setMyCommands, set/delete/getWebhookInfo.
It records every call, and can be told to answer ``sendMessage`` with a 429 (``retry_after``) or a 403
("bot was blocked by the user"). Tests use it in-process::

    with FakeTelegram() as fake:          # serves on a free port in a background thread
        fake.push_message(chat_id, "/start")
        fake.wait_for(lambda: fake.sent(chat_id))

From a shell (``python -m tests.fake_telegram --port 8081``) the same controls are HTTP endpoints:
``POST /_fake/message`` ``{"chat_id": 1, "text": "/status"}``, ``GET /_fake/calls?method=sendMessage``,
``POST /_fake/fail`` ``{"status": 429, "retry_after": 3}``, ``POST /_fake/block`` ``{"chat_id": 1}``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from tests.live import poll

TOKEN = "123456789:TEST-fake-token-for-war-tiket"
BOT_ID = 123456789
BLOCKED = "Forbidden: bot was blocked by the user"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int
    at: float = field(default_factory=time.monotonic)  # when it arrived (monotonic clock)

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value is not None else None

    @property
    def text(self) -> str:
        return self.params.get("text", "")


@dataclass
class Failure:
    status: int
    description: str
    retry_after: int | None = None
    times: int = 1
    method: str = "sendmessage"
    chat_id: int | None = None


class FakeTelegram:
    def __init__(self, *, token: str = TOKEN, username: str = "WarTiketBot", host: str = "127.0.0.1", port: int = 0):
        self.token = token
        self.username = username
        self.host = host
        self.port = port
        self.webhook: dict[str, Any] = {}
        self._calls: list[Call] = []
        self._failures: list[Failure] = []
        self._blocked: set[int] = set()
        self._updates: list[dict] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new_update: asyncio.Condition | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeTelegram:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start_site())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="fake-telegram", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake Telegram server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _start_site(self) -> None:
        self._new_update = asyncio.Condition()
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._api)
        app.router.add_get("/bot{token}/{method}", self._api)
        app.router.add_post("/_fake/message", self._control_message)
        app.router.add_get("/_fake/calls", self._control_calls)
        app.router.add_post("/_fake/fail", self._control_fail)
        app.router.add_post("/_fake/block", self._control_block)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    # --- what tests look at ------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method.lower()]

    def sent(self, chat_id: int | None = None) -> list[Call]:
        """Messages Telegram accepted (sendMessage answered 200), optionally to one chat."""
        return [c for c in self.calls("sendMessage") if c.status == 200 and (chat_id is None or c.chat_id == chat_id)]

    def attempts(self, chat_id: int) -> list[Call]:
        """Every sendMessage to ``chat_id``, accepted or refused."""
        return [c for c in self.calls("sendMessage") if c.chat_id == chat_id]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    @staticmethod
    def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
        """Poll ``predicate`` until it returns something truthy; return that, or fail after ``timeout``."""
        return poll(predicate, timeout=timeout, interval=interval)

    # --- scripting answers -------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        description: str = "",
        *,
        retry_after: int | None = None,
        times: int = 1,
        method: str = "sendMessage",
        chat_id: int | None = None,
    ) -> None:
        if not description:
            description = f"Too Many Requests: retry after {retry_after}" if status == 429 else "Error"
        with self._lock:
            self._failures.append(Failure(status, description, retry_after, times, method.lower(), chat_id))

    def block(self, chat_id: int) -> None:
        """From now on every sendMessage to ``chat_id`` gets 403 "bot was blocked by the user"."""
        with self._lock:
            self._blocked.add(int(chat_id))

    # --- updates (what users "type") ---------------------------------------------------------------

    def message_update(
        self, chat_id: int, text: str, *, language_code: str = "id", username: str = "", first_name: str = "Uji"
    ) -> dict:
        """An Update dict for a private message (not queued: for posting to a webhook)."""
        user = {"id": chat_id, "is_bot": False, "first_name": first_name, "language_code": language_code}
        if username:
            user["username"] = username
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": first_name},
            "from": user,
            "text": text,
        }
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return {"update_id": next(self._update_ids), "message": message}

    def callback_update(self, chat_id: int, data: str, *, language_code: str = "id") -> dict:
        user = {"id": chat_id, "is_bot": False, "first_name": "Uji", "language_code": language_code}
        return {
            "update_id": next(self._update_ids),
            "callback_query": {"id": str(next(self._message_ids)), "from": user, "chat_instance": "1", "data": data},
        }

    def push_update(self, update: dict) -> int:
        """Queue an update for the next getUpdates (the polling bot)."""
        with self._lock:
            self._updates.append(update)
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._notify(), self._loop).result(5)
        return update["update_id"]

    def push_message(self, chat_id: int, text: str, **kwargs) -> int:
        return self.push_update(self.message_update(chat_id, text, **kwargs))

    async def _notify(self) -> None:
        async with self._new_update:
            self._new_update.notify_all()

    # --- the Bot API -------------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body = await request.json()
            params.update(body if isinstance(body, dict) else {})
        elif request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str) and value[:1] in "[{":
                    try:
                        value = json.loads(value)
                    except ValueError:
                        pass
                params[key] = value
        return params

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"].lower()
        params = await self._params(request)
        if request.match_info["token"] != self.token:
            return self._record(method, params, 401, description="Unauthorized")
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return self._record(method, params, 404, description="Not Found: method not found")
        if method == "getupdates":
            return await handler(params)
        failure = self._failure_for(method, params)
        if failure is not None:
            extra = {"parameters": {"retry_after": failure.retry_after}} if failure.retry_after else {}
            return self._record(method, params, failure.status, description=failure.description, **extra)
        return self._record(method, params, 200, result=handler(params))

    def _failure_for(self, method: str, params: dict) -> Failure | None:
        chat_id = params.get("chat_id")
        with self._lock:
            if method == "sendmessage" and chat_id is not None and int(chat_id) in self._blocked:
                return Failure(403, BLOCKED)
            for failure in self._failures:
                if failure.method == method and (failure.chat_id is None or str(failure.chat_id) == str(chat_id)):
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                    return failure
        return None

    def _record(self, method: str, params: dict, status: int, *, result: Any = None, **error) -> web.Response:
        with self._lock:
            self._calls.append(Call(method, params, status))
        if status == 200:
            return web.json_response({"ok": True, "result": result})
        return web.json_response({"ok": False, "error_code": status, **error}, status=status)

    def _bot_user(self) -> dict:
        return {"id": BOT_ID, "is_bot": True, "first_name": "War Tiket", "username": self.username}

    def _m_getme(self, params: dict) -> dict:
        return {**self._bot_user(), "can_join_groups": True, "can_read_all_group_messages": False}

    def _m_sendmessage(self, params: dict) -> dict:
        chat_id = int(params["chat_id"])
        return {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": self._bot_user(),
            "text": params.get("text", ""),
        }

    def _m_answercallbackquery(self, params: dict) -> bool:
        return True

    def _m_setmycommands(self, params: dict) -> bool:
        return True

    def _m_setwebhook(self, params: dict) -> bool:
        self.webhook = {"url": params.get("url", ""), "secret_token": params.get("secret_token", "")}
        return True

    def _m_deletewebhook(self, params: dict) -> bool:
        self.webhook = {}
        return True

    def _m_getwebhookinfo(self, params: dict) -> dict:
        return {"url": self.webhook.get("url", ""), "has_custom_certificate": False, "pending_update_count": 0}

    async def _m_getupdates(self, params: dict) -> web.Response:
        offset = int(params.get("offset") or 0)
        # Long polling: hold the request until an update arrives or the client's timeout (capped) passes.
        timeout = min(float(params.get("timeout") or 0), 10.0)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            with self._lock:
                # Updates below the offset are confirmed: Telegram forgets them.
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = list(self._updates[:100])
            remaining = deadline - asyncio.get_running_loop().time()
            if ready or remaining <= 0:
                return self._record("getupdates", params, 200, result=ready)
            async with self._new_update:
                try:
                    await asyncio.wait_for(self._new_update.wait(), remaining)
                except TimeoutError:
                    pass

    # --- control endpoints for use from a shell ----------------------------------------------------

    async def _control_message(self, request: web.Request) -> web.Response:
        body = await request.json()
        update = self.message_update(
            int(body["chat_id"]),
            body["text"],
            language_code=body.get("language_code", "id"),
            username=body.get("username", ""),
        )
        with self._lock:
            self._updates.append(update)
        await self._notify()
        return web.json_response({"update_id": update["update_id"]})

    async def _control_calls(self, request: web.Request) -> web.Response:
        method = request.query.get("method")
        return web.json_response([asdict(c) for c in self.calls(method)])

    async def _control_fail(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.fail_next(
            int(body["status"]),
            body.get("description", ""),
            retry_after=body.get("retry_after"),
            times=int(body.get("times", 1)),
            chat_id=body.get("chat_id"),
        )
        return web.json_response({"ok": True})

    async def _control_block(self, request: web.Request) -> web.Response:
        self.block(int((await request.json())["chat_id"]))
        return web.json_response({"ok": True})


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Telegram Bot API on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=TOKEN)
    parser.add_argument("--username", default="WarTiketBot")
    args = parser.parse_args()
    fake = FakeTelegram(token=args.token, username=args.username, port=args.port).start()
    print(f"fake Telegram Bot API at {fake.url} (token {args.token}); Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
