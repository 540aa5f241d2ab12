"""How events get in: request models and the calls service."""
