"""One delivery attempt over HTTP, to allowed addresses only (``ssrf``).

Redirects are not followed (a 3xx is a failure), no proxy is taken from the
environment, the whole attempt is bounded in time, and at most
``MAX_ANSWER`` bytes of the answer are read, then dropped: nothing of it is
stored. Errors are short fixed phrases: never the URL (it may hold a token)
nor anything the receiver sent.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from scribeline.webhooks.ssrf import PublicOnlyResolver, Refused, check_url

__all__ = ["MAX_ANSWER", "Result", "Sender"]

#: Bytes of an answer read at most (then the connection is dropped).
MAX_ANSWER = 4096


@dataclass(frozen=True, slots=True)
class Result:
    """An attempt's HTTP status (None: no answer), why it failed, and its length."""

    status: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Sender:
    """Posts webhook bodies; one connection pool per node."""

    def __init__(self, allow_private: bool, timeout: float, connections: int) -> None:
        self._allow = allow_private
        self._timeout = timeout
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def longest(self) -> float:
        """Seconds one :meth:`post` may take at most."""
        return self._timeout + 1

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=PublicOnlyResolver(self._allow),
                use_dns_cache=False,  # every new connection resolves (and is checked) again
                limit=self._connections,
                limit_per_host=0,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,  # no proxy from the environment
                timeout=aiohttp.ClientTimeout(total=self._timeout, connect=self._timeout),
                auto_decompress=False,
                headers={"User-Agent": "Scribeline-Webhooks/1"},
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Result:
        began = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            check_url(url, self._allow)  # literal addresses: aiohttp does not resolve them
            async with asyncio.timeout(self.longest):
                async with self._open().post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    await response.content.read(MAX_ANSWER)
        except Refused as exc:
            error = str(exc)
        except TimeoutError:
            error = f"no answer within {self._timeout:g} s"
        except aiohttp.ClientConnectorDNSError:
            error = "the host has no address that may be delivered to"
        except aiohttp.ClientConnectorError:
            error = "could not connect"
        except aiohttp.ServerDisconnectedError:
            error = "the receiver closed the connection"
        except aiohttp.ClientError as exc:
            error = f"HTTP failure ({type(exc).__name__})"
        except OSError:
            error = "could not connect"
        if error is None and status is not None and not 200 <= status < 300:
            error = f"HTTP {status}"
            if 300 <= status < 400:
                error += " (redirects are not followed)"
        duration = round((time.perf_counter() - began) * 1000)
        return Result(status, error, duration)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
