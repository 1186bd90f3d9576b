"""The web app: an index of the runs under a folder, a review page per run, its images and
reviewed exports; and, for ``fishcam run --serve``, the live page of the running run.

Pages are rendered here (Jinja2, autoescaped); the pages' scripts only post corrections and put
back the fragments the server renders in answer. Nothing is fetched from anywhere else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fishcam.errors import FishcamError
from fishcam.serve import runs as runs_mod
from fishcam.serve.live import LiveView
from fishcam.serve.safety import Guard, inside, is_loopback, masked
from fishcam.sinks.run_writer import SUMMARY_NAME, TRACKS_NAME

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SERVED_SUFFIXES = {".jpg", ".jpeg", ".png", ".csv", ".json", ".jsonl", ".mp4", ".yaml", ".txt"}
_MEDIA = {".csv": "text/csv; charset=utf-8", ".jsonl": "application/x-ndjson", ".yaml": "text/plain; charset=utf-8"}


def _templates():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["t"] = lambda v: "" if v is None else f"{float(v):.2f} s"
    env.filters["score"] = lambda v: "" if v is None else f"{float(v):.2f}"
    return env


def create_app(
    root: Path | None = None,
    *,
    live: LiveView | None = None,
    token: str | None = None,
    host: str = "127.0.0.1",
    read_only: bool = False,
) -> Any:
    """The ASGI app serving the runs under ``root`` (and the live view, given one), guarded (see
    :mod:`fishcam.serve.safety`)."""
    env = _templates()
    base = root.resolve() if root is not None else None

    def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("read_only", read_only)
        context.setdefault("has_runs", base is not None)
        context.setdefault("has_live", live is not None)
        return HTMLResponse(env.get_template(template).render(**context), status_code=status)

    def not_found(what: str = "not found") -> Response:
        return PlainTextResponse(what, status_code=404)

    def run_folder(rel: str) -> Path | None:
        if base is None:
            return None
        folder = inside(base, rel.strip("/"))
        if folder is None or not (folder / SUMMARY_NAME).is_file():
            return None
        return folder

    async def index(request: Request) -> Response:
        if base is None:
            return RedirectResponse("/live", status_code=303)
        entries = await asyncio.to_thread(runs_mod.find_runs, base)
        return page("index.html", root=str(base), runs=entries)

    def review_context(rel: str, folder: Path) -> dict[str, Any]:
        assert base is not None
        entry = runs_mod.entry_for(base, folder, with_progress=False)  # the state below has it
        state = runs_mod.review_state(folder)
        for card in state.cards:
            card.views = runs_mod.track_views(base, folder, card.track_id)
        images = runs_mod.maxn_images(base, folder)
        counts = [{**c, "image": images.get((c["species"], c["max_n_frame"], c["max_n"]))} for c in state.counts]
        return {
            "rel": rel, "entry": entry, "state": state, "counts": counts, "queue": state.queue,
            "species": runs_mod.species_options(folder, state.cards), "fps": _fps(entry),
            "exports": _export_names(),
        }  # fmt: skip

    async def review_page(request: Request) -> Response:
        rel = request.path_params["rel"].strip("/")
        folder = run_folder(rel)
        if folder is None:
            return not_found("no run here")
        if not (folder / TRACKS_NAME).is_file():
            return page("message.html", 409, title="No tracks yet", text="This run has not written tracks.csv yet.")
        try:
            context = await asyncio.to_thread(review_context, rel, folder)
        except FishcamError as exc:  # a damaged run or review file: one line, as the CLI says it
            return page("message.html", 409, title="This run cannot be reviewed", text=str(exc).splitlines()[0])
        return page("review.html", **context)

    def fragments(rel: str, folder: Path, track_ids: set[int] | None = None) -> dict[str, Any]:
        context = review_context(rel, folder)
        counts_html = env.get_template("_counts.html").render(**context)
        card_template = env.get_template("_card.html")
        cards = {
            str(c.track_id): card_template.render(card=c, species=context["species"], read_only=read_only,
                                                  fps=context["fps"])
            for c in context["state"].cards
            if track_ids is None or c.track_id in track_ids
        }  # fmt: skip
        state = context["state"]
        return {"counts_html": counts_html, "cards": cards, "reviewed": state.reviewed, "total": state.total,
                "queue": state.queue}  # fmt: skip

    async def state(request: Request) -> Response:
        rel = request.path_params["rel"].strip("/")
        folder = run_folder(rel)
        if folder is None:
            return not_found("no run here")
        return JSONResponse(await asyncio.to_thread(fragments, rel, folder))

    async def correct(request: Request) -> Response:
        rel = request.path_params["rel"].strip("/")
        folder = run_folder(rel)
        if folder is None:
            return not_found("no run here")
        try:
            body = await request.json()
        except ValueError:
            return PlainTextResponse("the body is not JSON", status_code=400)
        if not isinstance(body, dict):
            return PlainTextResponse("send one JSON object", status_code=400)
        try:
            await asyncio.to_thread(_append, folder, body)
        except FishcamError as exc:
            return PlainTextResponse(str(exc).splitlines()[0], status_code=422)
        except (TypeError, ValueError) as exc:
            return PlainTextResponse(f"bad correction: {exc}", status_code=422)
        return JSONResponse(await asyncio.to_thread(fragments, rel, folder))

    async def files(request: Request) -> Response:
        if base is None:
            return not_found()
        path = inside(base, request.path_params["path"])
        if path is None or not path.is_file() or path.suffix.lower() not in SERVED_SUFFIXES:
            return not_found()
        return FileResponse(path, media_type=_MEDIA.get(path.suffix.lower()))

    async def reviewed(request: Request) -> Response:
        rel, _, name = request.path_params["path"].strip("/").rpartition("/")
        folder = run_folder(rel)
        if folder is None or name not in _export_names():
            return not_found()
        try:
            written = await asyncio.to_thread(_export_reviewed, folder)
        except FishcamError as exc:
            return PlainTextResponse(str(exc).splitlines()[0], status_code=503)
        path = written.get(name)
        if path is None or not path.is_file():
            return not_found()
        return FileResponse(path, media_type=_MEDIA.get(path.suffix.lower()), filename=name)

    routes = [
        Route("/", index),
        Route("/review/{rel:path}", review_page),
        Route("/api/state/{rel:path}", state),
        Route("/api/correct/{rel:path}", correct, methods=["POST"]),
        Route("/files/{path:path}", files),
        Route("/reviewed/{path:path}", reviewed),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    if live is not None:
        routes += _live_routes(live, page)
    app = Starlette(routes=routes)
    return Guard(app, token=token, loopback=is_loopback(host), read_only=read_only)


def _fps(entry: runs_mod.RunEntry) -> float:
    return (entry.summary.info.video_fps if entry.summary is not None else None) or 25.0


def _append(folder: Path, body: dict[str, Any]) -> None:
    from fishcam.review import Correction, append_correction

    allowed = {"action", "track", "reviewer", "species", "into", "frame"}
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    fields = {k: body.get(k) for k in allowed}
    correction = Correction(
        action=str(fields["action"] or ""),
        track=int(fields["track"]),  # type: ignore[arg-type]
        reviewer=str(fields["reviewer"] or "").strip(),
        at="",  # stamped by append_correction (UTC)
        species=str(fields["species"]).strip() if fields["species"] not in (None, "") else None,
        into=int(fields["into"]) if fields["into"] not in (None, "") else None,  # type: ignore[arg-type]
        frame=int(fields["frame"]) if fields["frame"] not in (None, "") else None,  # type: ignore[arg-type]
    )
    append_correction(folder, correction)


REVIEWED_DIR = "reviewed"


def _export_names() -> tuple[str, ...]:
    return ("species_counts.csv", "tracks.csv", "detections.csv")


def _export_reviewed(folder: Path) -> dict[str, Path]:
    """The reviewed tables, written afresh into RUN/reviewed/ (fishcam.review) as they are asked for."""
    from fishcam.review import reviewed_run, write_reviewed

    written = write_reviewed(reviewed_run(folder), folder / REVIEWED_DIR)
    return {path.name: path for path in written}


# ---- live ---------------------------------------------------------------------------------


def _live_routes(view: LiveView, page) -> list[Route]:
    async def live_page(request: Request) -> Response:
        return page("live.html", name=masked(view.name))

    async def mjpeg(request: Request) -> Response:
        boundary = "fishcamframe"

        async def frames():
            last = -1
            with view.watch():
                while not await request.is_disconnected():
                    started = time.monotonic()
                    if view.seq != last:
                        encoded = await asyncio.to_thread(view.jpeg)
                        if encoded is not None and encoded[0] != last:
                            last = encoded[0]
                            data = encoded[1]
                            yield (
                                (
                                    f"--{boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                                ).encode()
                                + data
                                + b"\r\n"
                            )
                    if view.ended and view.seq == last:
                        return
                    await asyncio.sleep(max(0.0, 1.0 / view.max_fps - (time.monotonic() - started)))

        return StreamingResponse(
            frames(),
            media_type=f"multipart/x-mixed-replace; boundary={boundary}",
            headers={"cache-control": "no-store"},
        )

    async def events(request: Request) -> Response:
        async def stream():
            with view.watch():
                yield "retry: 2000\n\n"
                while not await request.is_disconnected():
                    data = await asyncio.to_thread(view.state)
                    yield f"data: {json.dumps(data)}\n\n"
                    if view.ended:
                        return
                    await asyncio.sleep(1.0)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-store"})

    async def live_state(request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(view.state))

    return [
        Route("/live", live_page),
        Route("/live/stream.mjpg", mjpeg),
        Route("/live/events", events),
        Route("/live/state", live_state),
    ]
