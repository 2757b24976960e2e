"""Logging in (OAuth2 password flow) and asking who you are."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from ioc.core.accounts import SCREEN_ROLE, SERVICE_ROLES, authenticate
from ioc.serve.api.security import READERS, Principal, require

log = logging.getLogger("ioc.api.auth")
router = APIRouter(prefix="/api/v1", tags=["auth"])


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    role: str
    agency: str | None = None


@router.post("/auth/token", response_model=TokenOut)
async def login(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> TokenOut:
    state = request.app.state
    client = request.client.host if request.client else "unknown"
    username = form.username.strip().lower()[:64]
    wait = await state.login_guard.attempt(state.pool, username, client)
    if wait > 0:
        log.warning("login throttled", extra={"user": username, "client": client})
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail=f"too many failed logins: try again in {int(wait) + 1} s",
                            headers={"Retry-After": str(int(wait) + 1)})
    async with state.pool.acquire() as conn:
        user = await authenticate(conn, username, form.password[:1024])
    if user is None:  # counted already, by attempt()
        log.warning("login failed", extra={"user": username, "client": client})
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="wrong user name or password",
                            headers={"WWW-Authenticate": "Bearer"})
    if user.role in SERVICE_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="service accounts connect to the broker, not the API")
    if user.role == SCREEN_ROLE:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="wall screens use the token an admin issued for them")
    await state.login_guard.succeeded(state.pool, username, client)
    token, ttl = state.issuer.issue(user)
    log.info("login", extra={"user": username, "role": user.role, "client": client})
    return TokenOut(access_token=token, expires_in=ttl, role=user.role, agency=user.agency_id)


class MeOut(BaseModel):
    username: str
    role: str
    agency: str | None
    sectors: list[str] | None


@router.get("/me", response_model=MeOut)
async def me(p: Annotated[Principal, Depends(require(*READERS))]) -> MeOut:
    return MeOut(username=p.username, role=p.role, agency=p.agency_id, sectors=list(p.sectors) if p.sectors is not None else None)
