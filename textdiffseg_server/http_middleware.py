"""The base of this package's ASGI middlewares: non-HTTP traffic (lifespan, websockets) passes straight through."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class HTTPMiddleware:
    """Calls :meth:`handle` for HTTP requests; everything else goes to the wrapped app untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Process one HTTP request (subclasses call ``self.app`` to pass it on)."""
        raise NotImplementedError
