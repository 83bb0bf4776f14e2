"""The FastAPI app: the page, the API's routes, and JSON for every error (the OpenAPI page is at /docs)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from stransfer.engines import ENGINES
from stransfer.serve import forms
from stransfer.serve.catalogue import Catalogue
from stransfer.serve.guard import Guard
from stransfer.serve.jobs import JobStore
from stransfer.serve.problems import ServeError, from_exception
from stransfer.serve.runs import Engines
from stransfer.serve.settings import ServeConfig
from stransfer.serve.uploads import Uploads
from stransfer.serve.work import Busy, Task, WorkQueue

log = logging.getLogger("stransfer.serve")
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}


class Server:
    """The app's state: its folder, what it offers, the engines loaded, the queue and the jobs."""

    def __init__(self, config: ServeConfig) -> None:
        self.owns_workdir = config.workdir is None
        workdir = Path(tempfile.mkdtemp(prefix="stransfer-serve-")) if config.workdir is None else config.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = dataclasses.replace(config, workdir=workdir)
        self.catalogue = Catalogue()
        self.engines = Engines(self.config)
        self.queue = WorkQueue(config.workers, config.queue)
        self.jobs = JobStore(config.jobs_kept)
        self.uploads = Uploads(workdir, config.max_pixels)
        # Read once: the page and its script are served from memory.
        folder = resources.files("stransfer.serve") / "static"
        self.static = {p.name: p.read_bytes() for p in folder.iterdir() if Path(p.name).suffix in STATIC_TYPES}

    def submit(self, request: forms.RunRequest, timeout: float) -> Task:
        try:
            return self.queue.submit(lambda task: self.engines.run(request, task), timeout)
        except Busy as e:
            raise from_exception(e) from None

    def close(self) -> None:
        self.jobs.stop_all()
        self.queue.close()
        if self.owns_workdir:
            shutil.rmtree(self.config.workdir, ignore_errors=True)  # type: ignore[arg-type]

    def describe(self) -> dict:
        engines = [{"name": m, "style": "images" if forms.takes_images(m) else "names", "slow": m in forms.SLOW_METHODS,
                    "options": forms.options_of(m),
                    "default_model": getattr(ENGINES[m].config_type(), "model", None) if m in ENGINES else None}
                   for m in forms.methods()]
        limits = {"max_size": self.config.max_size, "max_upload_bytes": self.config.max_upload_bytes,
                  "max_pixels": self.config.max_pixels, "request_timeout_s": self.config.request_timeout,
                  "job_timeout_s": self.config.job_timeout, "queue": self.queue.capacity}
        return {"engines": engines, **self.catalogue.describe(), "limits": limits}


async def form_fields(
    content: Annotated[UploadFile | None, File(description="The photo (any image Pillow reads).")] = None,
    style: Annotated[UploadFile | None, File(description="A style image, for the engines that take one.")] = None,
    style_name: Annotated[str | None, Form(description="A shipped style (GET /v1/models), or with `model` a "
                                                       "style the model holds.")] = None,
    method: Annotated[str, Form(description="adain, swap, johnson; jobs also gatys and texture.")] = "adain",
    size: Annotated[int | None, Form(description="Long side of the result in pixels (default 512, or the "
                                                 "server's largest where that is smaller).")] = None,
    preserve_color: Annotated[str, Form(description="none, luminance or histogram.")] = "none",
    model: Annotated[str | None, Form(description="A model NAME from GET /v1/models.")] = None,
    alpha: Annotated[float | None, Form(description="adain, swap: 0 = the photo, 1 = the style.")] = None,
    style_weight: Annotated[float | None, Form(description="gatys: strength of the style.")] = None,
    iterations: Annotated[str | None, Form(description="gatys, texture: evaluations, e.g. 100 or 30,30,60.")]
    = None,
) -> forms.Form:
    return forms.Form(content, style, style_name, method, size, preserve_color, model, alpha, style_weight,
                      iterations)


FormDep = Annotated[forms.Form, Depends(form_fields)]


async def _checked(server: Server, request: Request, form: forms.Form, slow_allowed: bool) -> forms.RunRequest:
    sent = set((await request.form()).keys())
    return await forms.checked(form, sent, server.catalogue, server.uploads, slow_allowed=slow_allowed,
                               max_size=server.config.max_size)


async def _outcome(task: Task) -> bytes:
    """The run's PNG, or its error as a ServeError; a request that ends first (its deadline) stops the run."""
    try:
        return await asyncio.wrap_future(task.future)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - every outcome becomes a response
        error = from_exception(e)
        if error.status >= 500 and error.code == "internal":
            log.error("a run failed", exc_info=e)
        raise error from None
    finally:
        if not task.future.done():
            task.stop("the request ended")


def add_api_routes(app: FastAPI, server: Server) -> None:
    png = {200: {"content": {"image/png": {}}, "description": "The stylised image."}}

    @app.get("/v1/models", summary="Engines, models, shipped styles and the server's limits.")
    async def models() -> dict:
        return server.describe()

    @app.post("/v1/stylize", response_class=Response, responses=png, summary="Stylise a photo; the image back.")
    async def stylize(request: Request, form: FormDep) -> Response:
        run = await _checked(server, request, form, slow_allowed=False)
        return Response(await _outcome(server.submit(run, server.config.request_timeout)), media_type="image/png")

    @app.post("/v1/jobs", status_code=202, summary="Start a job (any method, gatys and texture too).")
    async def submit_job(request: Request, form: FormDep) -> JSONResponse:
        run = await _checked(server, request, form, slow_allowed=True)
        job = server.jobs.add(run.method, server.submit(run, server.config.job_timeout))
        return JSONResponse(job.describe(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    @app.get("/v1/jobs/{job_id}", summary="A job's status and progress; `result` once it is done.")
    async def job_status(job_id: str) -> dict:
        return server.jobs.get(job_id).describe()

    @app.get("/v1/jobs/{job_id}/result", response_class=Response, responses=png, summary="A finished job's image.")
    async def job_result(job_id: str) -> Response:
        return Response(server.jobs.get(job_id).result(), media_type="image/png")

    @app.delete("/v1/jobs/{job_id}", summary="Cancel a job, or forget a finished one.")
    async def cancel_job(job_id: str) -> dict:
        job = server.jobs.get(job_id)
        if job.finished:
            server.jobs.remove(job_id)
        else:
            job.task.stop("cancelled")
        return job.describe()


def add_page_routes(app: FastAPI, server: Server) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(server.static["index.html"], media_type=STATIC_TYPES[".html"])

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in server.static:
            raise ServeError(404, "not_found", f"no file {name!r}")
        return Response(server.static[name], media_type=STATIC_TYPES[Path(name).suffix],
                        headers={"Cache-Control": "no-cache"})

    @app.get("/thumbnails/{name}.jpg", include_in_schema=False)
    async def thumbnail(name: str) -> Response:
        style = server.catalogue.styles.get(name)
        if style is None or style.thumbnail is None:
            raise ServeError(404, "not_found", f"no thumbnail for {name!r}")
        return Response(style.thumbnail, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def serve_error(request: Request, e: ServeError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(e.status_code, "http_error")
        return JSONResponse({"error": code, "message": str(e.detail)}, status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        field = str(first.get("loc", ("", "?"))[-1])
        message = f"{field}: {first.get('msg', 'invalid')}"
        return JSONResponse({"error": "invalid_value", "message": message, "field": field}, status_code=422)


def create_app(config: ServeConfig | None = None) -> FastAPI:
    """The app for `config`; its worker threads start now, and stop (its folder removed) when the app shuts down."""
    server = Server(config or ServeConfig())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        server.close()

    app = FastAPI(title="stransfer", summary="Neural style transfer over HTTP", lifespan=lifespan,
                  description="Errors are JSON: {\"error\": code, \"message\": one line, \"field\": the form field}.")
    app.state.server = server
    app.add_middleware(Guard, config=server.config, retry_after=server.queue.retry_after)
    add_error_handlers(app)
    add_api_routes(app, server)
    add_page_routes(app, server)
    return app
