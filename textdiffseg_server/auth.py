"""Token validation that works: MONAI Label 0.8.5's own rejects every token under PyJWT 2.

``monailabel.endpoints.user.auth.from_token`` calls ``jwt.decode(token, key, options=...)`` without ``algorithms``,
which PyJWT >= 2.0 refuses ("It is required that you pass in a value for the 'algorithms' argument"), so with
``MONAI_LABEL_AUTH_ENABLE=true`` every request is a 401 (measured: ``tests/test_auth.py`` without this override got
401 for a valid token, and the server logged that PyJWT message). This replacement is
installed as a FastAPI dependency override of MONAI Label's ``get_current_user``; roles and claims are read exactly
as MONAI Label does (``MONAI_LABEL_AUTH_TOKEN_*`` settings). Only asymmetric algorithms are accepted: the key is the
realm's *public* key, and accepting HS256 with it would let anyone who knows that key forge tokens.
"""

from __future__ import annotations

from typing import Annotated, Any

import jwt
import requests
from fastapi import Depends, HTTPException, status
from monailabel.config import settings
from monailabel.endpoints.user.auth import DEFAULT_USER, User, get_public_key, oauth2_scheme

ASYMMETRIC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


def _claim(payload: dict[str, Any], path: str) -> Any:
    """A claim by MONAI Label's '#'-separated path (``realm_access#roles``)."""
    value: Any = payload
    for part in path.split("#"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def user_from_token(token: str) -> User:
    """The user a Keycloak access token names; raises ``jwt.InvalidTokenError`` for a bad or expired token."""
    if not settings.MONAI_LABEL_AUTH_ENABLE:
        return DEFAULT_USER
    key = get_public_key(settings.MONAI_LABEL_AUTH_REALM_URI)
    payload = jwt.decode(
        token, key, algorithms=ASYMMETRIC_ALGORITHMS, options={"verify_signature": True, "verify_aud": False}
    )
    roles = _claim(payload, settings.MONAI_LABEL_AUTH_TOKEN_ROLES)
    return User(
        username=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_USERNAME),
        email=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_EMAIL),
        name=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_NAME),
        roles=list(roles) if isinstance(roles, list) else [],
    )


async def current_user(token: Annotated[str, Depends(oauth2_scheme)]) -> User:
    """FastAPI dependency: 401 for a missing/invalid token, 503 when the identity provider cannot be reached."""
    try:
        return user_from_token(token)
    except jwt.InvalidTokenError as err:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, f"invalid token: {err}", headers={"WWW-Authenticate": "Bearer"}
        ) from err
    except requests.RequestException as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"cannot reach the identity provider at {settings.MONAI_LABEL_AUTH_REALM_URI}",
        ) from err
