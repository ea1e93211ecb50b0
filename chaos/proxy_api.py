"""Toxiproxy's HTTP API (aiohttp.web) over a collection of proxies: same paths, JSON shapes and statuses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from chaos.proxy_errors import PROXY_EXISTS, PROXY_NOT_FOUND, ApiError, bad_request, missing_field
from chaos.proxy_listener import Proxy, split_hostport
from chaos.proxy_toxics import Toxic

#: The Toxiproxy version whose API this server speaks.
VERSION = "2.12.0"
DEFAULT_LISTEN = "127.0.0.1:0"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(exc.to_json(), status=exc.status)


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except ValueError as exc:
        raise bad_request(str(exc)) from exc


def _address(body: dict[str, Any], key: str, default: str | None) -> str:
    value = body.get(key) or default
    if not value:
        raise missing_field(key)
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string")
    try:
        split_hostport(value)
    except ValueError as exc:
        raise bad_request(f"{key}: {exc}") from exc
    return value


def _enabled(body: dict[str, Any], default: bool) -> bool:
    value = body.get("enabled", default)
    if not isinstance(value, bool):
        raise bad_request("enabled must be a boolean")
    return value


class ProxyApi:
    """The proxies and the routes that manage them. Mutations are serialised by one lock, as in Toxiproxy."""

    def __init__(self) -> None:
        self.proxies: dict[str, Proxy] = {}
        self._lock = asyncio.Lock()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_errors])
        app.router.add_get("/version", self.version)
        app.router.add_post("/reset", self.reset)
        app.router.add_post("/populate", self.populate)
        app.router.add_get("/proxies", self.list_proxies)
        app.router.add_post("/proxies", self.create_proxy)
        app.router.add_get("/proxies/{proxy}", self.get_proxy)
        app.router.add_post("/proxies/{proxy}", self.update_proxy)
        app.router.add_patch("/proxies/{proxy}", self.update_proxy)  # newer clients update with PATCH
        app.router.add_delete("/proxies/{proxy}", self.delete_proxy)
        app.router.add_get("/proxies/{proxy}/toxics", self.list_toxics)
        app.router.add_post("/proxies/{proxy}/toxics", self.create_toxic)
        app.router.add_get("/proxies/{proxy}/toxics/{toxic}", self.get_toxic)
        app.router.add_post("/proxies/{proxy}/toxics/{toxic}", self.update_toxic)
        app.router.add_patch("/proxies/{proxy}/toxics/{toxic}", self.update_toxic)
        app.router.add_delete("/proxies/{proxy}/toxics/{toxic}", self.delete_toxic)
        return app

    async def close(self) -> None:
        async with self._lock:
            proxies, self.proxies = list(self.proxies.values()), {}
            await asyncio.gather(*(proxy.stop() for proxy in proxies))

    def _proxy(self, request: web.Request) -> Proxy:
        proxy = self.proxies.get(request.match_info["proxy"])
        if proxy is None:
            raise ApiError(PROXY_NOT_FOUND, 404)
        return proxy

    def _new_proxy(self, body: object) -> tuple[Proxy, bool]:
        """Validates a proxy description; returns the (unstarted) proxy and whether to enable it."""
        if not isinstance(body, dict):
            raise bad_request("expected a JSON object")
        name = body.get("name")
        if not name:
            raise missing_field("name")
        if not isinstance(name, str):
            raise bad_request("name must be a string")
        upstream = _address(body, "upstream", None)
        return Proxy(name, _address(body, "listen", DEFAULT_LISTEN), upstream), _enabled(body, True)

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    async def reset(self, request: web.Request) -> web.Response:
        """Removes every toxic and enables every proxy."""
        async with self._lock:
            for proxy in self.proxies.values():
                for name in list(proxy.toxics):
                    proxy.remove_toxic(name)
                await proxy.start()
        return web.Response(status=204)

    async def populate(self, request: web.Request) -> web.Response:
        """Creates or replaces proxies; one with the same listen and upstream is kept as it is."""
        body = await _body(request)
        if not isinstance(body, list):
            raise bad_request("expected a JSON array of proxies")
        wanted = [self._new_proxy(item) for item in body]
        done: list[dict[str, Any]] = []
        async with self._lock:
            for proxy, enabled in wanted:
                existing = self.proxies.get(proxy.name)
                if existing is not None and (existing.listen, existing.upstream) == (proxy.listen, proxy.upstream):
                    done.append(existing.to_json())
                    continue
                try:
                    if existing is not None:
                        del self.proxies[proxy.name]
                        await existing.stop()
                    if enabled:
                        await proxy.start()
                except ApiError as exc:
                    return web.json_response({**exc.to_json(), "proxies": done}, status=exc.status)
                self.proxies[proxy.name] = proxy
                done.append(proxy.to_json())
        return web.json_response({"proxies": done}, status=201)

    async def list_proxies(self, request: web.Request) -> web.Response:
        return web.json_response({name: proxy.to_json() for name, proxy in self.proxies.items()})

    async def create_proxy(self, request: web.Request) -> web.Response:
        proxy, enabled = self._new_proxy(await _body(request))
        async with self._lock:
            if proxy.name in self.proxies:
                raise ApiError(PROXY_EXISTS, 409)
            if enabled:
                await proxy.start()
            self.proxies[proxy.name] = proxy
        return web.json_response(proxy.to_json(), status=201)

    async def get_proxy(self, request: web.Request) -> web.Response:
        return web.json_response(self._proxy(request).to_json())

    async def update_proxy(self, request: web.Request) -> web.Response:
        """Updates listen, upstream and/or enabled; fields left out keep their values."""
        body = await _body(request)
        if not isinstance(body, dict):
            raise bad_request("expected a JSON object")
        async with self._lock:
            proxy = self._proxy(request)
            listen = _address(body, "listen", proxy.listen)
            upstream = _address(body, "upstream", proxy.upstream)
            await proxy.update(listen, upstream, _enabled(body, proxy.enabled))
        return web.json_response(proxy.to_json())

    async def delete_proxy(self, request: web.Request) -> web.Response:
        async with self._lock:
            proxy = self._proxy(request)
            del self.proxies[proxy.name]
            await proxy.stop()
        return web.Response(status=204)

    async def list_toxics(self, request: web.Request) -> web.Response:
        return web.json_response([toxic.to_json() for toxic in self._proxy(request).toxics.values()])

    async def create_toxic(self, request: web.Request) -> web.Response:
        body = await _body(request)
        async with self._lock:
            proxy = self._proxy(request)
            toxic = Toxic.from_json(body)
            proxy.add_toxic(toxic)
        return web.json_response(toxic.to_json())

    async def get_toxic(self, request: web.Request) -> web.Response:
        return web.json_response(self._proxy(request).get_toxic(request.match_info["toxic"]).to_json())

    async def update_toxic(self, request: web.Request) -> web.Response:
        """Updates ``toxicity`` and/or some ``attributes``; name, type and stream cannot change."""
        body = await _body(request)
        async with self._lock:
            toxic = self._proxy(request).update_toxic(request.match_info["toxic"], body)
        return web.json_response(toxic.to_json())

    async def delete_toxic(self, request: web.Request) -> web.Response:
        async with self._lock:
            self._proxy(request).remove_toxic(request.match_info["toxic"])
        return web.Response(status=204)
