"""``Hub.close_stream``: what a node does with a deleted call's subscribers."""

from __future__ import annotations

from tests.unit.test_hub import STREAM, RecordingConnection, _hub, _live


async def test_every_subscriber_of_the_stream_is_closed_and_no_other() -> None:
    """Live and joining connections of the stream, in every format, are closed with
    the code given; another stream's subscriber and an unknown stream are untouched."""
    hub, _, _ = await _hub(head=0)
    live, joining, other = RecordingConnection(), RecordingConnection(), RecordingConnection()
    await _live(hub, live)
    await hub.attach(STREAM, joining, "g", lambda e: b"{}")  # type: ignore[arg-type]
    await hub.attach("call:other", other, "f", lambda e: b"{}")  # type: ignore[arg-type]
    assert hub.close_stream(STREAM) == 2
    assert (live.closed_with, joining.closed_with, other.closed_with) == (1000, 1000, None)
    assert hub.close_stream("call:nobody") == 0
