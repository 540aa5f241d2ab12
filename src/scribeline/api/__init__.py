"""HTTP and WebSocket wiring: routes call into the layers below and nothing more."""
