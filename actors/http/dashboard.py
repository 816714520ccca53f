"""The dashboard: one page at ``/`` and its static assets under ``/dashboard/`` (plain HTML, CSS
and JavaScript, no build step), shipped as package data in ``actors/http/static/``.

The page holds no data of its own: it asks for a token (kept in the tab's ``sessionStorage``),
reads the API with it, and follows the event stream (``/v1/events``) to update live. The kill
switches are shown to admins only, and each asks for a confirmation.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, send_from_directory

STATIC = Path(__file__).resolve().parent / "static"


def dashboard_blueprint() -> Blueprint:
    bp = Blueprint("dashboard", __name__, static_folder=str(STATIC), static_url_path="/dashboard")

    @bp.get("/")
    async def index() -> Response:
        response = await send_from_directory(STATIC, "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    return bp
