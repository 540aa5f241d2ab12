"""The HTTP connection layer under the application: timeouts, malformed requests,
masking.

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
* **Unmasked client frames** fail the WebSocket with 1002 (RFC 6455 section
  5.1); aiohttp's reader accepts them.

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
from websockets.frames import Close, Frame, Opcode

from scribeline.api.responses import error_response
from scribeline.errors import CloseCode, malformed_request
from scribeline.protocols.mask import MaskCheck

__all__ = ["SERVER_NAME", "Runner"]

log = logging.getLogger(__name__)

#: The ``Server`` header: the product, never its version or its stack's.
SERVER_NAME = "Scribeline"

#: Seconds a request body that is no longer wanted is read and dropped.
LINGERING_TIME = 2.0

_UNMASKED_CLOSE = Frame(
    Opcode.CLOSE, Close(CloseCode.PROTOCOL_ERROR, "unmasked frame").serialize()
).serialize(mask=False)


class _Handler(RequestHandler):
    __slots__ = ("_header_handle", "_header_timeout", "_mask_check")

    def __init__(self, manager: Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_handle: asyncio.TimerHandle | None = None
        self._mask_check: MaskCheck | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()  # from connecting: a client that sends nothing is cut off too

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        check = self._mask_check
        if check is not None and self._upgraded:
            if check.feed(data):
                super().data_received(data)
            else:
                self._fail_unmasked()
            return
        self._mask_check = None
        super().data_received(data)
        if self._upgraded:
            self._disarm_header_timer()
            self._mask_check = check = MaskCheck()
            # The upgrade request's packet may already carry the client's first frames
            # (which it should not send before the handshake's answer): with no
            # handshake to answer yet, an unmasked one just ends the connection.
            if not check.feed(self._message_tail):
                self._fail_unmasked(handshake_sent=False)
        elif self._messages or self._request_in_progress:
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

    def _fail_unmasked(self, *, handshake_sent: bool = True) -> None:
        self._force_close = True  # nothing more reaches the WebSocket reader
        self._message_tail = b""
        if self.transport is not None:
            log.info("closing a WebSocket that sent an unmasked frame (1002)")
            if handshake_sent:
                self.transport.write(_UNMASKED_CLOSE)
            self.transport.close()

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
