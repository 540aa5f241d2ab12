"""One fixture per interface, parametrized over every backend: the contract suites.

The storage fixtures live in ``storage_backends.py`` and the broker fixtures in
``broker_backends.py``; every test in this directory that takes ``storage`` or
``broker`` runs once per backend.
"""

from __future__ import annotations

from tests.contract.broker_backends import *  # noqa: F403
from tests.contract.storage_backends import *  # noqa: F403
