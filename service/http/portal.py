"""The victims' page: `/` and its scripts and styles under `/static/`, served when the
service takes victims' cases from people without a key of their own (`serve
--anonymous-submit`, or `--portal-key-file`). The page never holds a key: with a page
key, the server makes the page's keyless calls with it (service.auth).

The page hashes photos in the browser (static/hashing/, the CLI's algorithms in
JavaScript) and sends only the hashes to `/v1/cases`. Its policy allows nothing but this
origin, plus `blob:` images for the thumbnails made on the device.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PAGE = STATIC / "portal" / "index.html"
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob:; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


class _Static(StaticFiles):
    """Static files under the page's policy; no directory listings."""

    async def get_response(self, path: str, scope: dict) -> Response:  # type: ignore[override,type-arg]
        response = await super().get_response(path, scope)
        response.headers["content-security-policy"] = PAGE_POLICY
        if path.endswith(".js"):
            response.headers["content-type"] = "text/javascript; charset=utf-8"
        return response


async def _page(request: Request) -> Response:
    headers = {"content-security-policy": PAGE_POLICY}
    return FileResponse(PAGE, media_type="text/html; charset=utf-8", headers=headers)


def portal_routes() -> list[BaseRoute]:
    return [
        Route("/", _page, methods=["GET"]),
        Mount("/static", app=_Static(directory=STATIC, html=False), name="static"),
    ]
