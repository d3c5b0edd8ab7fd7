"""The one web kit of the three services' pages: Jinja2 templates on one base layout,
Bootstrap 5 and htmx (with its SSE extension) pinned from the npm registry and served by the
service under ``/static/kit/`` (each with its licence, in ``static/vendor/``), and gettext
catalogues (``locale/``, Simplified Chinese first, English too) read through Babel.

A service's ``api/`` room adds its pages with :func:`page`; :func:`install_web` serves the
assets, the landing page ``/`` and the language switch."""

from __future__ import annotations

import gettext
import io
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from fastapi import APIRouter, Cookie, Depends, FastAPI, Header, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).parent
LOCALES = HERE / "locale"
KIT = "/static/kit"
Language = Literal["zh_CN", "en"]
LANGUAGES: tuple[Language, ...] = ("zh_CN", "en")
DEFAULT: Language = "zh_CN"
COOKIE = "swd_lang"

# Each service's name on its pages (translated in the catalogues).
SERVICE_TITLES = {
    "dispatch_center": "Dispatch center",
    "station_worker": "Social-work station",
    "audit": "Audit and evaluation",
}


@cache
def translations(language: Language) -> gettext.GNUTranslations:
    """The language's catalogue (``locale/<language>/LC_MESSAGES/messages.po``), compiled in
    memory: the ``.po`` files are the only copy kept."""
    with (LOCALES / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def chosen_language(
    swd_lang: Annotated[str | None, Cookie()] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> Language:
    """The switch's choice (its cookie), else the browser's first language we have, else
    Simplified Chinese."""
    if swd_lang in LANGUAGES:
        return swd_lang
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower().replace("-", "_")
        if tag.startswith("zh"):
            return "zh_CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT


PageLanguage = Annotated[Language, Depends(chosen_language)]


@cache
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(("html",)),
        extensions=["jinja2.ext.i18n"],
    )
    return env


def page(
    request: Request, template: str, language: Language, context: Mapping[str, Any] = {}
) -> HTMLResponse:
    """Render one of the kit's templates in ``language``."""
    env = _environment().overlay()
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    service: str = request.app.state.service
    html = env.get_template(template).render(
        request=request,
        language=language,
        languages=LANGUAGES,
        kit=KIT,
        service=service,
        service_title=SERVICE_TITLES[service],
        **context,
    )
    return HTMLResponse(html)


router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def landing(request: Request, language: PageLanguage) -> HTMLResponse:
    """What the service offers a person (its pages will hang here) and its API docs."""
    return page(request, "landing.html", language)


@router.get("/language/{code}")
async def switch_language(code: str, back: str = "/") -> RedirectResponse:
    """Remember the language in a cookie and go back (to a path of this service only)."""
    target = back if back.startswith("/") and not back.startswith("//") else "/"
    response = RedirectResponse(target, status_code=303)
    if code in LANGUAGES:
        response.set_cookie(COOKIE, code, max_age=365 * 86400, samesite="lax", httponly=True)
    return response


def install_web(app: FastAPI, service: str) -> None:
    app.state.service = service
    app.mount(KIT, StaticFiles(directory=HERE / "static"), name="kit")
    app.include_router(router)
