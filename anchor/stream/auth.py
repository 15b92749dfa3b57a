"""Bearer-token auth for everything that changes what the anchor says (push, speak, interrupt).

Watching needs no token. The token comes from ServerConfig.token, else the ANCHOR_TOKEN
environment variable, else one is generated at start (and printed by `anchor serve`). Requests
carry it as `Authorization: Bearer T`; websockets may use `?token=T` (browsers cannot set headers
on a websocket).
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Mapping

ENV_TOKEN = "ANCHOR_TOKEN"


def resolve_token(configured: str, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(token, where it came from: "config" | "env" | "generated")."""
    if configured:
        return configured, "config"
    value = (env if env is not None else os.environ).get(ENV_TOKEN, "")
    if value:
        return value, "env"
    return secrets.token_urlsafe(18), "generated"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer T` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def token_matches(expected: str, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
