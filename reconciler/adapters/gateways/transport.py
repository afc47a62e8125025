"""The gateways' HTTP client: urllib3's connection pools, used directly.

A poll is one small GET; through `requests` its per-call machinery (preparing the
request, merging settings, hooks, cookies, building a `Response`) cost more CPU than the
pool and the socket (`python -m bench --only gateway-http`). Here a call is the pool's
`request` and nothing else: no automatic retries or redirects (the sweep retries), the
(connect, read) timeouts of each call, certificates checked against certifi's bundle as
`requests` does.

Proxies are honoured as `requests` honours them: `HTTP_PROXY`, `HTTPS_PROXY`,
`ALL_PROXY` and `NO_PROXY` from the environment (read once, when the client is built);
a call to a host `NO_PROXY` does not exclude goes through that proxy (HTTPS tunnelled
with CONNECT), with the proxy URL's user and password as `Proxy-Authorization`.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import urllib3

from reconciler.adapters.gateways.base import HttpAnswer

Timeout = tuple[float, float]  # (connect, read) seconds

DEFAULT_HEADERS = {
    "User-Agent": "reconciler",
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate",
}


class HttpClient:
    """Send gateway requests over pooled connections, through a proxy when one is set."""

    def __init__(self, pool_size: int = 32) -> None:
        self._pool_size = pool_size
        self._direct = self._manager()
        self._proxies = urllib.request.getproxies()
        self._via: dict[str, urllib3.ProxyManager] = {}
        self._lock = threading.Lock()

    def _manager(self, proxy: str | None = None) -> urllib3.PoolManager:
        options: dict[str, Any] = {
            "num_pools": 8,
            "maxsize": self._pool_size,
            "retries": False,
            "ca_certs": certifi.where(),
        }
        if proxy is None:
            return urllib3.PoolManager(**options)
        auth = urllib3.util.parse_url(proxy).auth
        headers = urllib3.make_headers(proxy_basic_auth=auth) if auth else None
        return urllib3.ProxyManager(proxy, proxy_headers=headers, **options)

    def _pools_for(self, url: str) -> urllib3.PoolManager:
        if not self._proxies:
            return self._direct
        parts = urlsplit(url)
        proxy = self._proxies.get(parts.scheme) or self._proxies.get("all")
        host = parts.hostname or ""
        if not proxy or urllib.request.proxy_bypass(host):
            return self._direct
        with self._lock:
            if proxy not in self._via:
                self._via[proxy] = self._manager(proxy)  # type: ignore[assignment]
            return self._via[proxy]

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout: Timeout,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
    ) -> HttpAnswer:
        """Send one request and read the whole answer; urllib3's errors are the caller's."""
        sent = dict(DEFAULT_HEADERS)
        sent.update(headers or {})
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params, doseq=True)}"
        body: bytes | None = None
        if json is not None:
            body = _dumps(json)
            sent.setdefault("Content-Type", "application/json")
        elif data is not None:
            body = urlencode(data, doseq=True).encode()
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        response = self._pools_for(url).request(
            method,
            url,
            body=body,
            headers=sent,
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
            retries=False,
            redirect=False,
        )
        return HttpAnswer(response.status, response.headers, response.data, url)

    def close(self) -> None:
        """Close every pooled connection."""
        self._direct.clear()
        with self._lock:
            for manager in self._via.values():
                manager.clear()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False).encode()
