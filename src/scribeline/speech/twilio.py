"""Twilio Media Streams: the messages a stream sends and its request signature.

Twilio sends JSON text frames (``connected``, ``start``, ``media``, ``dtmf``,
``mark``, ``stop``) and expects nothing back from a listener. Numbers inside
the messages are strings (``"sequenceNumber": "3"``). The upgrade request is
signed like any Twilio webhook: ``X-Twilio-Signature`` is the base64
HMAC-SHA1, keyed with the account's auth token, of the URL Twilio was given,
which for a stream is always a ``wss://`` URL without a query string.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "MULAW_8K",
    "Media",
    "MediaFormat",
    "Start",
    "decode_payload",
    "signature_valid",
    "signed_url",
    "twilio_signature",
]

#: The only format Twilio streams today, and the only one the engines take.
MULAW_8K = ("audio/x-mulaw", 8000, 1)

#: Longest stream Scribeline places audio in (a day of timestamps, in ms).
MAX_TIMESTAMP_MS = 86_400_000


def _int_from_string(value: Any) -> Any:
    """Twilio sends numbers as strings; integers are taken too (other producers)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    return value


#: A non-negative integer sent as a string.
StrInt = Annotated[int, BeforeValidator(_int_from_string), Field(ge=0)]


class _Message(BaseModel):
    # Twilio may add fields: unknown ones are ignored, known ones are checked.
    model_config = ConfigDict(extra="ignore", frozen=True)


class MediaFormat(_Message):
    encoding: str
    sample_rate: int = Field(alias="sampleRate")
    channels: int = 1

    def supported(self) -> bool:
        return (self.encoding, self.sample_rate, self.channels) == MULAW_8K


class Start(_Message):
    account_sid: str = Field("", alias="accountSid", max_length=64)
    # It names the stream in logs and in segment ids ("{streamSid}:in:3").
    stream_sid: str = Field(alias="streamSid", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    call_sid: str = Field("", alias="callSid", max_length=64)
    tracks: list[Literal["inbound", "outbound"]] = Field(min_length=1, max_length=2)
    media_format: MediaFormat = Field(alias="mediaFormat")
    custom_parameters: dict[str, str] = Field(
        default_factory=dict, alias="customParameters", max_length=64
    )


class Media(_Message):
    track: Literal["inbound", "outbound"]
    timestamp: StrInt = Field(le=MAX_TIMESTAMP_MS)
    payload: str = Field(max_length=16_384)


def decode_payload(payload: str) -> bytes:
    """The mu-law bytes of a ``media.payload``; ``ValueError`` if it is not base64."""
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise ValueError("media.payload is not base64") from None


def twilio_signature(auth_token: str, url: str) -> str:
    """``X-Twilio-Signature`` of a request to ``url`` without POST parameters."""
    digest = hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_valid(auth_token: str, url: str, signature: str) -> bool:
    """Whether ``signature`` is Twilio's for ``url`` (compared in constant time)."""
    return hmac.compare_digest(twilio_signature(auth_token, url).encode(), signature.encode())


def signed_url(public_url: str, host: str, path: str) -> str:
    """The URL Twilio signed: the public base (``SCRIBELINE_PUBLIC_URL``, as
    ``wss://``) or else ``wss://`` and the request's Host, then the path. Twilio
    only streams to ``wss://`` and strips query strings, so neither the scheme
    the server sees behind a TLS proxy nor a query string takes part."""
    if public_url:
        base = public_url.rstrip("/")
        for plain, secure in (("https://", "wss://"), ("http://", "wss://"), ("ws://", "wss://")):
            if base.startswith(plain):
                base = secure + base[len(plain) :]
        return base + path
    return f"wss://{host}{path}"
