"""Who a media stream acts for: a token or a Twilio signature, checked in order.

Twilio strips query strings from stream URLs, so a media stream proves itself
in one of three ways (docs/audio.md):

1. a token (an API key or an access token with ``write``) in the URL path
   ``/v1/media-stream/{token}``, or, for producers other than Twilio, the
   usual ``?token=``, ``Authorization: Bearer`` or token subprotocol;
2. an ``X-Twilio-Signature`` on the upgrade that an organization's stored
   Twilio auth token produces for the stream's public ``wss://`` URL;
3. a ``token`` custom parameter, which arrives in ``start`` after the socket
   is open: nothing of the stream is processed before it is checked.

The first two are checked before the upgrade (a refusal is an HTTP error);
the third when ``start`` comes (a refusal closes the socket). A signature
that is present must be valid; an organization may require one on every
stream (``require_twilio_signature``).
"""

from __future__ import annotations

from dataclasses import dataclass

from scribeline.auth import Authenticator, Principal
from scribeline.errors import AuthenticationFailed, Forbidden
from scribeline.speech.settings import OrgSpeech, SpeechSettingsService
from scribeline.speech.twilio import signature_valid

__all__ = ["Admission", "MediaAccess"]


@dataclass(frozen=True, slots=True)
class Admission:
    """What the upgrade proved: the organization (None: wait for ``start``'s
    token) and the principal of a token (None for a signature alone, which
    speaks for the whole organization)."""

    org: OrgSpeech | None = None
    principal: Principal | None = None


class MediaAccess:
    """Checks a media stream's credentials."""

    def __init__(self, auth: Authenticator, speech: SpeechSettingsService) -> None:
        self._auth = auth
        self._speech = speech

    async def at_upgrade(self, token: str | None, url: str, signature: str | None) -> Admission:
        """Check the credentials the upgrade request carries; ``url`` is the one
        Twilio signed (see ``twilio.signed_url``)."""
        if token:
            principal = await self._principal(token)
            org = await self._speech.opened(principal.org_id)
            self._check_signature(org, url, signature)
            return Admission(org, principal)
        if signature is not None:
            signer = await self._speech.signer(url, signature)
            if signer is None:
                raise AuthenticationFailed(
                    "X-Twilio-Signature matches no stored Twilio auth token for this URL"
                )
            return Admission(signer)
        return Admission()

    async def at_start(
        self, admission: Admission, token: str | None, call_sid: str
    ) -> tuple[OrgSpeech, Principal | None]:
        """The organization a started stream acts for and its token's principal
        (None for a signature alone): the upgrade's, or those of ``token`` (the
        ``token`` custom parameter). A token restricted to one call opens only
        that call's stream."""
        org, principal = admission.org, admission.principal
        if org is None:
            if not token:
                raise AuthenticationFailed(
                    "No credential: put a token in the URL path or a 'token' custom"
                    " parameter, or sign the stream with the organization's Twilio auth token"
                )
            principal = await self._principal(token)
            org = await self._speech.opened(principal.org_id)
            self._check_signature(org, "", None)
        if principal is not None:
            principal.allow_call(call_sid)
        return org, principal

    async def _principal(self, token: str) -> Principal:
        principal = await self._auth.authenticate(token)
        principal.require("write")
        return principal

    @staticmethod
    def _check_signature(org: OrgSpeech, url: str, signature: str | None) -> None:
        """Refuse a signature that ``org``'s stored Twilio auth token did not make,
        and no signature where the organization requires one."""
        if signature is not None and org.twilio_auth_token is not None:
            if not signature_valid(org.twilio_auth_token, url, signature):
                raise Forbidden("X-Twilio-Signature does not match this stream's URL")
        elif org.require_twilio_signature:
            raise Forbidden("This organization accepts only media streams signed by Twilio")
