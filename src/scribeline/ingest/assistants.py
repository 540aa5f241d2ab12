"""The assistant service: an organization's assistants, their transcription switch
and their speech engine."""

from __future__ import annotations

from scribeline.domain import Assistant
from scribeline.errors import NotFound
from scribeline.storage import Storage

__all__ = ["AssistantService"]


class AssistantService:
    """Assistants for the REST API."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def create(
        self, org_id: int, name: str, transcription_enabled: bool, speech_engine: str = "default"
    ) -> Assistant:
        return await self._storage.create_assistant(
            org_id, name, transcription_enabled, speech_engine
        )

    async def get(self, org_id: int, assistant_id: int | None) -> Assistant:
        """The organization's assistant (its default one for None); ``NotFound``
        outside the organization."""
        assistant = await self._storage.get_assistant(org_id, assistant_id)
        if assistant is None:
            raise NotFound(f"Assistant {assistant_id} not found")
        return assistant

    async def list_assistants(self, org_id: int) -> list[Assistant]:
        return await self._storage.list_assistants(org_id)

    async def update(
        self,
        org_id: int,
        assistant_id: int,
        transcription_enabled: bool | None = None,
        speech_engine: str | None = None,
    ) -> Assistant:
        """Switch transcription on or off, or choose its speech engine (None:
        unchanged); ``NotFound`` outside the organization.

        Callers that cache the switch (``CallService``) must then forget it.
        """
        assistant = await self._storage.update_assistant(
            org_id, assistant_id, transcription_enabled, speech_engine
        )
        if assistant is None:
            raise NotFound(f"Assistant {assistant_id} not found")
        return assistant
