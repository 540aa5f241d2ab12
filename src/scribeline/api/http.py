"""The HTTP connection layer under the application: timeouts, malformed requests,
handing a WebSocket's socket over.

aiohttp's request handler is extended in three places it has no setting for:

* **Header timeout.** A request's headers must be complete within
  ``header_timeout`` of the connection opening, or of the first byte of the
  next request on a kept-alive connection; a client that sends nothing or
  dribbles a header is cut off. (aiohttp's own keep-alive timer, set to the
  idle timeout, closes connections that sit idle between requests.) Bytes
  that arrive while a request is being handled cannot be told apart from its
  body here, so the head of a request pipelined behind it is bounded by the
  idle timeout instead.
* **Malformed requests** are one WARNING line naming the client and the kind
  of error. aiohttp logs them at ERROR with a traceback whose message quotes
  the request's first bytes, which can hold an API key.
* **Handing over a WebSocket.** After an upgrade the socket is no longer
  HTTP: :meth:`_Handler.detach` gives the bytes that followed the upgrade
  request to the WebSocket endpoint, which becomes the transport's protocol
  (``api/websocket.py``), and leaves aiohttp nothing to read, write or time
  out on that socket. Its request, handler and parser are then freed, so an
  open WebSocket holds only its own small state.

The subclass relies on a few attributes of aiohttp's ``RequestHandler`` (the
version is pinned); ``tests/integration/test_http_hardening.py`` covers each
behaviour.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from scribeline.api.responses import error_response
from scribeline.errors import malformed_request

__all__ = ["SERVER_NAME", "Runner", "detach"]

log = logging.getLogger(__name__)

#: The ``Server`` header: the product, never its version or its stack's.
SERVER_NAME = "Scribeline"

#: Seconds a request body that is no longer wanted is read and dropped.
LINGERING_TIME = 2.0


def detach(request: web.BaseRequest) -> bytes:
    """Take an upgrade request's socket away from the HTTP layer (see the module's
    doc); the bytes the client sent after the request. The handler's answer is
    then never written: return :class:`Detached`."""
    handler = request.protocol
    assert isinstance(handler, _Handler)
    return handler.detach()


class Detached(web.StreamResponse):
    """What a handler returns for a request whose socket it took over: nothing is
    written (the 101 went out with the takeover)."""

    def __init__(self) -> None:
        super().__init__(status=101)
        self.force_close()

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class _Handler(RequestHandler):
    __slots__ = ("_header_handle", "_header_timeout")

    def __init__(self, manager: Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_handle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()  # from connecting: a client that sends nothing is cut off too

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._upgraded or self._messages or self._request_in_progress:
            self._disarm_header_timer()
        elif data:
            self._arm_header_timer()  # part of a request head: the clock runs

    def _arm_header_timer(self) -> None:
        if self._header_handle is None:
            self._header_handle = self._loop.call_later(self._header_timeout, self._header_late)

    def _disarm_header_timer(self) -> None:
        if self._header_handle is not None:
            self._header_handle.cancel()
            self._header_handle = None

    def _header_late(self) -> None:
        self._header_handle = None
        if self._upgraded or self._messages or self._request_in_progress:
            return
        if self.transport is not None:
            log.info("closing a connection whose request headers did not arrive in time")
            self.transport.close()

    def detach(self) -> bytes:
        """Stop handling this socket (see :func:`detach`): no more reading, writing,
        timers or shutdown for it here; the bytes buffered after the upgrade."""
        self._disarm_header_timer()
        tail, self._message_tail = self._message_tail, b""
        self._force_close = True  # the request loop ends with this request
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None
        if self._manager is not None:
            self._manager.connection_lost(self, None)  # not this server's to close any more
        paused = self._buffer_paused or self._reading_paused
        self._buffer_paused = self._reading_paused = False
        if paused and self.transport is not None:
            self.transport.resume_reading()  # the new protocol reads from the start
        self.transport = None  # nothing of the answer is written
        return tail

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request aiohttp could not parse or handle: one line, no request bytes."""
        if status >= 500:
            log.error("internal error on a request from %s", request.remote, exc_info=exc)
        else:
            log.warning(
                "malformed HTTP request from %s: %d %s",
                request.remote,
                status,
                type(exc).__name__ if exc is not None else "error",
            )
        if request.writer.output_size > 0:
            raise ConnectionError("the response had started; the connection is dropped")
        error = malformed_request(status)
        response = error_response(error)
        response.headers["Server"] = SERVER_NAME
        response.force_close()
        return response


class _Server(Server):
    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout

    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, header_timeout=self._header_timeout, **self._kwargs)


class Runner(web.AppRunner):
    """``web.AppRunner`` whose connections use the handler above.

    ``keepalive_timeout`` (aiohttp's) is the idle timeout between requests.
    """

    def __init__(self, app: web.Application, *, header_timeout: float, **kwargs: Any) -> None:
        # After an early answer (413, 408) the rest of a body is read and dropped
        # for this long, so the client sees the answer rather than a reset.
        kwargs.setdefault("lingering_time", LINGERING_TIME)
        super().__init__(app, **kwargs)
        self._header_timeout = header_timeout

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        return _Server(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            header_timeout=self._header_timeout,
            **server._kwargs,
        )
