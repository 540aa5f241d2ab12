"""The assistant service: an organization's assistants and their transcription switch."""

from __future__ import annotations

from scribeline.domain import Assistant
from scribeline.errors import NotFound
from scribeline.storage import Storage

__all__ = ["AssistantService"]


class AssistantService:
    """Assistants for the REST API."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def create(self, org_id: int, name: str, transcription_enabled: bool) -> Assistant:
        return await self._storage.create_assistant(org_id, name, transcription_enabled)

    async def list_assistants(self, org_id: int) -> list[Assistant]:
        return await self._storage.list_assistants(org_id)

    async def update(
        self, org_id: int, assistant_id: int, transcription_enabled: bool
    ) -> Assistant:
        """Switch transcription on or off; ``NotFound`` outside the organization.

        Callers that cache the switch (``CallService``) must then forget it.
        """
        assistant = await self._storage.update_assistant(
            org_id, assistant_id, transcription_enabled
        )
        if assistant is None:
            raise NotFound(f"Assistant {assistant_id} not found")
        return assistant
