"""The scenarios; importing this package registers every one of them in REGISTRY.

Each module holds one family and registers its scenarios with @scenario, declaring their
sizes and metrics next to the code that measures them.
"""

from __future__ import annotations

from . import basic, connect, http, protocol2, shared  # noqa: F401  (registration)
from .base import REGISTRY, Ctx, Scenario, scenario

__all__ = ["REGISTRY", "Ctx", "Scenario", "scenario"]
