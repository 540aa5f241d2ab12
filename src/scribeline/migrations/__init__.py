"""Schema migrations (Alembic), applied at start-up by ``scribeline.storage.migrate``."""
