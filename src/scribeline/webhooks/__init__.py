"""Signed webhooks: endpoints per organization, a durable outbox, one deliverer per node.

``types`` (which stored events are webhook events, and their bodies),
``signing`` (Standard Webhooks signatures), ``ssrf`` (where deliveries may go),
``policy`` (backoff and giving up), ``sender`` (one HTTP attempt), ``service``
(what the REST API does) and ``deliverer`` (the claim loop). Nothing is imported
here, so storage can use the pure ``types`` without the rest.
"""
