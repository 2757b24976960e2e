"""Who is calling: JWTs from the password flow, roles, and what an agency may see."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Awaitable

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

from ioc.core.accounts import User, get_user
from ioc.core.storage import catalogue
from ioc.serve.api.principal_cache import PrincipalCache

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
_ALGO = "HS256"


@dataclass(frozen=True)
class Principal:
    username: str
    role: str
    agency_id: str | None
    sectors: tuple[str, ...] | None  # agency only: the sectors it reports

    @property
    def is_agency(self) -> bool:
        return self.role == "agency"


class TokenIssuer:
    def __init__(self, secret: str, ttl_s: int) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def issue(self, user: User, *, ttl_s: int | None = None) -> tuple[str, int]:
        now = int(time.time())
        ttl = ttl_s or self.ttl_s
        claims = {"sub": user.username, "role": user.role, "iat": now, "exp": now + ttl, "iss": "ioc"}
        if user.agency_id:
            claims["agency"] = user.agency_id
        return jwt.encode(claims, self._secret, algorithm=_ALGO), ttl

    def decode(self, token: str) -> dict[str, Any]:
        return jwt.decode(token, self._secret, algorithms=[_ALGO], issuer="ioc", options={"require": ["exp", "sub", "role"]})


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def principal_from_token(request: Request, token: str | None) -> Principal:
    if not token:
        raise _unauthorized("missing bearer token: log in at /api/v1/auth/token")
    state = request.app.state
    try:
        claims = state.issuer.decode(token)
    except jwt.ExpiredSignatureError:
        raise _unauthorized("token expired: log in again") from None
    except jwt.PyJWTError:
        raise _unauthorized("invalid token") from None
    username = str(claims["sub"])
    cache: PrincipalCache[Principal] = state.principal_cache
    found, principal = cache.get(username)
    if not found:
        generation = cache.generation
        async with state.pool.acquire() as conn:
            user = await get_user(conn, username)
            sectors = None
            if user is not None and user.role == "agency":
                rows = await catalogue.agency_sectors(conn, user.agency_id)
                sectors = tuple(rows or ())
        principal = None if user is None or user.disabled else Principal(user.username, user.role, user.agency_id, sectors)
        cache.put(username, principal, generation)
    if principal is None:
        raise _unauthorized("account unknown or disabled")
    if principal.role != claims["role"]:
        raise _unauthorized("the account's role changed: log in again")
    return principal


def require(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting only these roles (every route names its roles)."""

    async def dep(request: Request, token: Annotated[str | None, Depends(oauth2)]) -> Principal:
        principal = await principal_from_token(request, token)
        if principal.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"role {principal.role!r} may not do this")
        return principal

    return dep


STAFF = ("admin", "operator", "leader")
VIEWERS = (*STAFF, "screen")  # who may see what the wall shows (KPIs, series, cameras)
READERS = (*VIEWERS, "agency")  # agencies see only their own sectors' readings
