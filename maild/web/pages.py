"""The pages of the web channel (SPEC §10), as a Starlette app:

- `GET /` the request form, `POST /` its submission;
- `GET /t/<token>` a ticket's status page, `POST /t/<token>` a message from it;
- `GET /t/<token>/files/<id>` a file of the ticket's public correspondence;
- `GET /style.css`.

A submission is checked (its form token against the cookie, every field, the size of its
files), turned into a message (`maild.web.submission`) and stored through the intake's `store`
— only then, once the worker has threaded it, does the page answer with the ticket number.
Anything refused gets a 4xx page that says why, and nothing is stored. Pages are in the
ticket's language (or the visitor's, for the form), escaped by Jinja2's autoescape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, Headers, QueryParams, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Scope

from maild import links, views
from maild.clock import time_for_people
from maild.compose import BUILTIN_TEMPLATES, OutgoingFile, size_for_people
from maild.config import PRIORITIES, Settings, WebSettings
from maild.dbapi import Pool
from maild.errors import StorageUnavailable
from maild.headers import deliverable, safe_filename, single_line
from maild.subject import tagged_subject
from maild.views import TicketRow
from maild.web.guard import Guard, RateLimit
from maild.web.submission import build, message_id

Store = Callable[[bytes, str], object]  # the intake: raw bytes and their source, committed
PAGES = BUILTIN_TEMPLATES / "web"
LANGUAGES = ("en", "ru")
COOKIE = "maild_form"
THREADED_WITHIN = 15.0  # seconds a page waits for the worker to thread a submission
MAX_FILES = 10


def make_app(settings: Settings, readers: Pool, store: Store) -> ASGIApp:
    assert settings.web is not None
    pages = _Pages(settings, settings.web, readers, store)
    app = Starlette(routes=[
        Route("/", pages.form, methods=["GET"]),
        Route("/", pages.submit, methods=["POST"]),
        Route("/style.css", pages.style, methods=["GET"]),
        Route("/t/{token}", pages.status, methods=["GET"]),
        Route("/t/{token}", pages.post_message, methods=["POST"]),
        Route("/t/{token}/files/{file:int}", pages.download, methods=["GET"]),
    ], exception_handlers={HTTPException: pages.http_error})
    return Guard(app, max_body=pages.max_body, rate=RateLimit(), refuse=pages.refusal)


class _Refused(Exception):
    def __init__(self, status: int, problem: str) -> None:
        super().__init__(problem)
        self.status, self.problem = status, problem


class _Pages:
    def __init__(self, settings: Settings, web: WebSettings, readers: Pool,
                 store: Store) -> None:
        self.settings, self.web, self.readers, self.store = settings, web, readers, store
        self.max_upload = (settings.smtp.max_message_bytes if settings.smtp
                           else settings.mail.max_message_bytes)
        self.max_body = self.max_upload + 256 * 1024  # the fields and the multipart framing
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PAGES)),
                                      autoescape=True, undefined=jinja2.StrictUndefined)
        zone = settings.sla.zone
        self.env.filters["time"] = lambda moment: time_for_people(moment, zone)
        self.env.filters["size"] = size_for_people
        self.secure = web.base_url.startswith("https://")

    # --- rendering ----------------------------------------------------------------------

    def page(self, language: str, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(f"{language}/{name}.html").render(
            lang=language, priorities=PRIORITIES, **context)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def language(self, request: Request | Scope) -> str:
        """The visitor's language: `?lang=`, else their browser's, else the configured one."""
        scope = request.scope if isinstance(request, Request) else request
        asked = QueryParams(scope.get("query_string", b"")).get("lang")
        if asked in LANGUAGES:
            return asked
        for item in Headers(scope=scope).get("accept-language", "").split(","):
            code = item.split(";")[0].strip().lower()[:2]
            if code in LANGUAGES:
                return code
        configured = self.settings.mail.language
        return configured if configured in LANGUAGES else "en"

    async def refusal(self, scope: Scope, status: int) -> Response:
        problem = {413: "too_large", 429: "too_many"}.get(status, "bad_request")
        return self.page(self.language(scope), "error", status, problem=problem)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        problem = "not_found" if status in (404, 405) else "bad_request"
        return self.page(self.language(request), "error", status, problem=problem)

    def form_token(self, request: Request) -> tuple[str, str]:
        """A token for a new form, and the visitor's cookie id it is bound to (a new one for a
        browser that has none yet)."""
        browser = request.cookies.get(COOKIE) or links.browser_id()
        return links.form_token(self.web, browser), browser

    def with_form_cookie(self, response: Response, browser: str) -> Response:
        response.set_cookie(COOKIE, browser, httponly=True, samesite="strict",
                            secure=self.secure, max_age=links.FORM_MAX_AGE)
        return response

    # --- the request form --------------------------------------------------------------

    async def form(self, request: Request) -> Response:
        token, browser = self.form_token(request)
        response = self.page(self.language(request), "form", csrf=token, values={},
                             errors=[], max_upload=self.max_upload)
        return self.with_form_cookie(response, browser)

    async def submit(self, request: Request) -> Response:
        language = self.language(request)
        try:
            form = await self.read_form(request)
            nonce, issued = self.checked_token(request, form)
            values = {name: str(form.get(name) or "").strip()
                      for name in ("name", "email", "subject", "body", "priority")}
            errors = self.problems(values)
            files = await self.files(form)
        except _Refused as refused:
            return self.page(language, "error", refused.status, problem=refused.problem)
        if errors:
            token, browser = self.form_token(request)  # nothing was stored: a fresh form
            response = self.page(language, "form", 400, csrf=token, values=values,
                                 errors=errors, max_upload=self.max_upload)
            return self.with_form_cookie(response, browser)
        raw = build(self.settings, nonce=nonce, issued=issued, name=values["name"],
                    email=values["email"].lower(), subject=values["subject"],
                    body=values["body"], files=files, priority=values["priority"])
        try:
            await run_in_threadpool(self.store, raw, "web")
        except StorageUnavailable:
            return self.page(language, "error", 503, problem="unavailable")
        number = await self.threaded(message_id(self.settings, nonce))
        if number is None:
            return self.page(language, "received", 202, email=values["email"])
        return self.page(language, "done", number=number, email=values["email"],
                         status_url=links.status_url(self.settings, number))

    async def read_form(self, request: Request) -> FormData:
        try:
            return await request.form(max_files=MAX_FILES, max_fields=20,
                                      max_part_size=self.max_upload)
        except HTTPException as exc:  # malformed, or more parts or a bigger field than allowed
            raise _Refused(413 if "size" in str(exc.detail) else 400, "bad_request") from None

    def checked_token(self, request: Request, form: FormData) -> tuple[str, datetime]:
        """The form's nonce and when the form was made, when its token is valid and was made
        for the visitor's cookie (a form posted from another site has not got that cookie)."""
        token = str(form.get("csrf") or "")
        browser = request.cookies.get(COOKIE, "")
        checked = links.form_nonce(self.web, token, browser) if token and browser else None
        if checked is None:
            raise _Refused(403, "forged")
        return checked

    def problems(self, values: dict[str, str]) -> list[str]:
        found = [f"missing_{name}" for name in ("name", "email", "subject", "body")
                 if not values[name]]
        email = values["email"].lower()
        if email and (not deliverable(email) or "@" not in email or "." not in
                      email.rpartition("@")[2] or single_line(email) != email):
            found.append("invalid_email")
        elif email and self.settings.is_own(email):
            found.append("own_email")
        if values["priority"] not in PRIORITIES:
            found.append("invalid_priority")
        if len(values["subject"]) > 200:
            found.append("long_subject")
        return found

    async def files(self, form: FormData) -> list[OutgoingFile]:
        files = []
        total = 0
        for upload in form.getlist("files"):
            if not isinstance(upload, UploadFile) or not upload.filename:
                continue  # an empty file input
            data = await upload.read()
            total += len(data)
            if total > self.max_upload:
                raise _Refused(413, "too_large")
            files.append(OutgoingFile(safe_filename(upload.filename),
                                      upload.content_type or "application/octet-stream", data))
        return files

    async def threaded(self, mid: str) -> str | None:
        """The number of the ticket the submission went to, once the worker has threaded it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + THREADED_WITHIN
        while loop.time() < deadline:
            number = await run_in_threadpool(self.ticket_of_message, mid)
            if number:
                return number
            await asyncio.sleep(0.05)
        return None

    def ticket_of_message(self, mid: str) -> str | None:
        with self.readers.reader() as db, db.snapshot():
            return views.threaded_ticket(db, mid)

    # --- a ticket's status page --------------------------------------------------------

    def ticket(self, token: str) -> tuple[TicketRow, dict[str, Any]]:
        number = links.ticket_of(self.web, token)
        with self.readers.reader() as reader, reader.snapshot():
            found = views.ticket(reader, number) if number else None
            if found is None:  # forged, revoked, or no such ticket: all look the same
                raise HTTPException(404)
            return found, views.public_view(reader, found)

    async def status(self, request: Request) -> Response:
        token = request.path_params["token"]
        found, view = await run_in_threadpool(self.ticket, token)
        form_token, browser = self.form_token(request)
        response = self.page(_language_of(found), "status", ticket=view, token=token,
                             csrf=form_token, max_upload=self.max_upload,
                             sent=request.query_params.get("sent") == "1")
        return self.with_form_cookie(response, browser)

    async def post_message(self, request: Request) -> Response:
        token = request.path_params["token"]
        found, view = await run_in_threadpool(self.ticket, token)
        language = _language_of(found)
        try:
            form = await self.read_form(request)
            nonce, issued = self.checked_token(request, form)
            files = await self.files(form)
        except _Refused as refused:
            return self.page(language, "error", refused.status, problem=refused.problem)
        body = str(form.get("body") or "").strip()
        if not body and not files:
            form_token, browser = self.form_token(request)
            response = self.page(language, "status", 400, ticket=view, token=token,
                                 csrf=form_token, max_upload=self.max_upload, sent=False,
                                 errors=["missing_body"])
            return self.with_form_cookie(response, browser)
        tag = tagged_subject(self.settings.mail.subject_tag, found.number, found.subject)
        raw = build(self.settings, nonce=nonce, issued=issued, name=found.customer_name,
                    email=found.customer, subject=f"Re: {tag}", body=body or "-", files=files)
        try:
            await run_in_threadpool(self.store, raw, "web")
        except StorageUnavailable:
            return self.page(language, "error", 503, problem="unavailable")
        await self.threaded(message_id(self.settings, nonce))
        return RedirectResponse(f"/t/{token}?sent=1", status_code=303)

    async def download(self, request: Request) -> Response:
        found, _ = await run_in_threadpool(self.ticket, request.path_params["token"])

        def read() -> Any:
            with self.readers.reader() as reader, reader.snapshot():
                return views.public_file(reader, found, request.path_params["file"])

        file = await run_in_threadpool(read)
        if file is None:
            raise HTTPException(404)
        return Response(file.data, media_type="application/octet-stream",
                        headers={"Content-Disposition": _download_disposition(file.filename),
                                 "Cache-Control": "no-store"})

    async def style(self, request: Request) -> Response:
        css = (PAGES / "style.css").read_text(encoding="utf-8")
        return Response(css, media_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600"})


def _download_disposition(filename: str) -> str:
    """`Content-Disposition` of a download: the safe name (`safe_filename`), in ASCII for old
    browsers and in RFC 5987 form for the rest."""
    name = safe_filename(filename)
    fallback = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"


def _language_of(ticket: TicketRow) -> str:
    return ticket.language if ticket.language in LANGUAGES else "en"



