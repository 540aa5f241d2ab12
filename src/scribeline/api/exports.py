"""``GET /v1/calls/{call_sid}/transcript?format=txt|json|vtt|srt``: a call's final
transcript as a file (``scribeline.exports``), streamed page by page so that a
long call is never held whole, in memory or in one response body."""

from __future__ import annotations

import re

from aiohttp import web

from scribeline.api.rest import authorize
from scribeline.errors import InvalidRequest
from scribeline.exports import CONTENT_TYPES, FORMATS, Exporter, Format

__all__ = ["PAGE", "PAGE_BYTES", "routes"]

routes = web.RouteTableDef()

#: Finals read per page, and about how many bytes of them.
PAGE = 500
PAGE_BYTES = 256 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _format(request: web.Request) -> Format:
    raw = request.query.get("format", "txt")
    for fmt in FORMATS:
        if raw == fmt:
            return fmt
    raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}")


def _filename(call_sid: str, fmt: str) -> str:
    """A file name made of the SID's safe characters only (it is the client's)."""
    return f"{_UNSAFE.sub('_', call_sid)[:100] or 'transcript'}.{fmt}"


@routes.get("/v1/calls/{call_sid}/transcript")
async def export_transcript(request: web.Request) -> web.StreamResponse:
    """The call's finals with speakers and timings. The first page is read before
    the response starts, so a missing call or an unavailable store is an error
    response; a failure later can only cut the download short."""
    services, principal = await authorize(request, "read")
    call_sid = request.match_info["call_sid"]
    principal.allow_call(call_sid)
    fmt = _format(request)
    call = await services.calls.get(principal.org_id, call_sid)
    page = await services.calls.transcript(call, 0, PAGE, PAGE_BYTES)
    exporter = Exporter(fmt, call.call_sid, call.started_at)
    response = web.StreamResponse(
        headers={
            "Content-Type": CONTENT_TYPES[fmt],
            "Content-Disposition": f'attachment; filename="{_filename(call_sid, fmt)}"',
        }
    )
    await response.prepare(request)
    try:
        await response.write(exporter.head())
        while True:
            await response.write(exporter.feed(page.events))
            if page.next_after is None:
                break
            page = await services.calls.transcript(call, page.next_after, PAGE, PAGE_BYTES)
        await response.write(exporter.finish())
    except Exception:
        # The status line is sent: close the connection so the client sees a body cut
        # short, never a complete-looking file or an error response inside the body.
        if request.transport is not None:
            request.transport.close()
        raise
    await response.write_eof()
    return response
