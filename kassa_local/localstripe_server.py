"""localstripe (a stateful fake Stripe) served in-process on 127.0.0.1.

localstripe's own CLI binds every interface and pickles its whole store to
``/tmp/localstripe.pickle`` after every write; here it runs on an aiohttp ``AppRunner`` in a
dedicated thread with its own event loop, bound to 127.0.0.1, with the disk persistence disabled.
Its state (``localstripe.resources.store`` and the registered webhooks) is process-wide: one
local stack per process at a time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from typing import Any

import requests
from aiohttp import web

log = logging.getLogger("kassa_local.localstripe")

_patched = False


def _patch_localstripe() -> None:
    """No pickling to /tmp: the store lives in memory only."""
    global _patched
    if _patched:
        return
    from localstripe import resources

    def _no_op(self: Any) -> None:
        return None

    resources.Store.dump_to_disk = _no_op
    resources.Store.try_load_from_disk = _no_op
    _patched = True


def _fresh_app() -> web.Application:
    """A new Application with localstripe's routes, middlewares and CORS hook.

    ``localstripe.server.app`` binds itself to the first event loop that runs it; a copy per start
    lets one process start and stop the local stack several times (tests do).
    """
    with warnings.catch_warnings():
        # localstripe's handlers are plain functions, which aiohttp deprecates (and still supports)
        warnings.simplefilter("ignore", DeprecationWarning)
        from localstripe import server

        src: web.Application = server.app
        app = web.Application(middlewares=list(src.middlewares))
        for callback in src.on_response_prepare:
            app.on_response_prepare.append(callback)
        for route in src.router.routes():
            if route.resource is None:  # pragma: no cover - localstripe has none
                continue
            app.router.add_route(route.method, route.resource.canonical, route.handler)
    return app


class LocalStripe:
    """Runs ``localstripe.server.app`` on 127.0.0.1:{port} (0 = pick a free port)."""

    def __init__(self, port: int = 0) -> None:
        self._requested_port = port
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15) -> None:
        _patch_localstripe()
        from localstripe import resources, webhooks

        resources.store.clear()
        webhooks._webhooks.clear()
        self._thread = threading.Thread(target=self._serve, name="kassa-localstripe", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("localstripe did not start in time")
        if self._error is not None:
            raise RuntimeError(f"localstripe failed to start: {self._error}") from self._error

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
            runner = web.AppRunner(_fresh_app(), access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", self._requested_port)
            loop.run_until_complete(site.start())
            self._runner = runner
            self.port = int(runner.addresses[0][1])
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def register_webhook(self, webhook_id: str, url: str, secret: str) -> None:
        resp = requests.post(
            f"{self.url}/_config/webhooks/{webhook_id}", data={"url": url, "secret": secret}, timeout=10
        )
        resp.raise_for_status()

    def pending_webhooks(self) -> int:
        """Webhook deliveries scheduled by localstripe and not finished yet (each waits ~1 s)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return 0

        async def count() -> int:
            return sum(
                1
                for task in asyncio.all_tasks()
                if not task.done() and getattr(task.get_coro(), "__name__", "") == "_send_webhook"
            )

        return asyncio.run_coroutine_threadsafe(count(), loop).result(timeout=5)

    def stop(self, timeout: float = 10) -> None:
        loop, runner = self._loop, self._runner
        if loop is not None and loop.is_running():

            async def shutdown() -> None:
                current = asyncio.current_task()
                for task in asyncio.all_tasks():
                    if task is not current:
                        task.cancel()
                if runner is not None:
                    await runner.cleanup()
                await asyncio.get_running_loop().shutdown_default_executor()  # getaddrinfo threads

            try:
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=timeout)
            except Exception:  # pragma: no cover - diagnostic
                log.exception("localstripe did not shut down cleanly")
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():  # pragma: no cover - diagnostic
                log.warning("localstripe thread did not stop within %s s", timeout)
        self._loop = None
        self._runner = None
