"""The HTTP service of ``emodistill serve``: its endpoints, the page and the offline API documentation.

Endpoints (``/docs`` shows them; ``/openapi.json`` is their schema):

* ``POST /v1/predict``: multipart ``video`` (+ optional ``transcript``) -> a prediction, as ``emodistill
  predict`` prints it (:mod:`emodistill.serve.schemas`);
* ``POST /v1/predict/features``: JSON arrays of one clip named as the MMSA data keys -> a prediction;
* ``POST /v1/timeline``: multipart ``video`` (+ ``transcript``, ``segments``) -> the long-video timeline;
* ``GET /v1/model``: the model, its data spec, labels, extraction record and limits;
* ``GET /v1/health``: 200 once the model is loaded (no token needed).

Every error is ``{"error": one line, "status": code}`` (:func:`emodistill.serve.guard.error_body`, and the
handlers below). The model and the extraction models load once per worker process, at start-up, on the one
thread that runs them.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from emodistill import __version__
from emodistill.extract.errors import ExtractError
from emodistill.inference.arrays import FeatureShapeError, feature_keys
from emodistill.inference.predictor import LABEL_7_NAMES, CheckpointNotPredictable, Predictor
from emodistill.inference.timeline import parse_segments
from emodistill.serve.guard import Guard
from emodistill.serve.jobs import JobQueue
from emodistill.serve.schemas import ErrorBody, FeatureRequest, Health, ModelInfo, Prediction, Timeline
from emodistill.serve.settings import ServeSettings
from emodistill.serve.uploads import make_root, request_dir, save_text, save_upload, video_seconds

log = logging.getLogger("emodistill.serve")

NO_TRANSCRIPT = ("no transcript: send what is said in the form field 'transcript'; this model's extraction has "
                 "no speech recognition model to fall back on")
TRANSCRIPT_HELP = "what is said; if absent, speech recognition when the model's extraction has it"
UNSUPPORTED = ("unreadable or corrupt video file", "no video stream")
"""Starts of the extraction errors that mean 'not a video' (415); every other one is 422."""
MIN_WINDOW_S = 1.0
"""Shortest timeline window the service computes (a 1800-s video then has at most 1800 segments)."""
ERRORS = {code: {"model": ErrorBody} for code in (401, 408, 411, 413, 415, 422, 503)}


class ApiError(Exception):
    """A request the service refuses: its HTTP status and one line."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _display_name(filename: str | None) -> str | None:
    """The client's file name, for display only (last path part, printable, at most 200 characters)."""
    if not filename:
        return None
    name = Path(filename.replace("\\", "/")).name
    return "".join(c for c in name if c.isprintable())[:200] or None


class Service:
    """What one worker process holds: the settings, the Predictor, the queue and the upload root."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.jobs = JobQueue(settings.queue)
        self.predictor: Predictor | None = None
        self.root: Path | None = None

    def start(self) -> None:
        import tempfile

        import torch

        s = self.settings
        if s.threads:
            torch.set_num_threads(s.threads)
        self.predictor = self.jobs.submit(
            lambda: Predictor.from_checkpoint(s.checkpoint, device=s.device, backend=s.backend, threads=s.threads,
                                              videos=False))
        self.root = make_root(s.tmp_dir)
        # This process serves requests only: the multipart parser's spool files (parts over 1 MB, unnamed and
        # already unlinked) go to the private root too, not to the shared temporary directory.
        tempfile.tempdir = str(self.root)
        if self.predictor.extractor is not None:
            self.predictor.extractor.no_transcript = NO_TRANSCRIPT
        log.info("emodistill serve: %s (%s) loaded; backend %s", Path(s.checkpoint).name,
                 self.predictor.checkpoint.get("model_name"), self.predictor.backend)

    def stop(self) -> None:
        import shutil

        try:
            self.jobs.shutdown()  # waiting jobs are cancelled, the running one finishes
            if self.predictor is not None:
                self.predictor.close()
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)

    def _video(self, path: Path, limit: float, option: str) -> None:
        """In the model thread: refuse a file that is not a video or is too long, before decoding it."""
        try:
            seconds = video_seconds(path)
        except ExtractError as e:
            raise ApiError(415, f"not a video: {e}") from e
        if seconds > limit:
            raise ApiError(422, f"the video lasts {seconds:.1f} s, over the limit of {limit:g} s ({option})")

    def predict_video(self, path: Path, transcript: Path | None) -> dict[str, Any]:
        self._video(path, self.settings.max_seconds, "--max-seconds")
        return self.predictor.predict_video(path, transcript)

    def timeline(self, path: Path, segments: str | float, transcript: Path | None) -> dict[str, Any]:
        self._video(path, self.settings.max_timeline_seconds, "--max-timeline-seconds")
        return self.predictor.predict_timeline(path, segments, transcript)

    async def upload_job(self, video: UploadFile, transcript: str | None, fn, *args) -> dict[str, Any]:
        """Save the upload in a private directory, run ``fn(path, *args, transcript_path)`` on the model thread,
        delete the directory; the result gets the version, the client's file name and the service timings."""
        t0 = time.perf_counter()
        if self.predictor.extractor is None:
            raise ApiError(422, "this model predicts from features only (POST /v1/predict/features): its "
                           "checkpoint has no extraction record, so videos cannot be featurised as in training")
        with request_dir(self.root) as directory:
            path, size = await run_in_threadpool(save_upload, video.file, video.filename, directory)
            if size == 0:
                raise ApiError(422, "the uploaded video is empty (0 bytes)")
            text = save_text(transcript, directory) if transcript and transcript.strip() else None
            try:
                result, waited = await self.run(fn, path, *args, text)
            except ApiError as e:  # the reason may quote the file: name the upload, not the server's path
                e.message = e.message.replace(f"'{path}'", "the upload").replace(str(path), "the upload")
                raise
        result = {"version": __version__, **result, "video": _display_name(video.filename)}
        result["seconds"] = {**result.get("seconds", {}), "queue": round(waited, 4),
                             "request": round(time.perf_counter() - t0, 4)}
        return result

    async def run(self, fn, *args) -> tuple[dict[str, Any], float]:
        """:meth:`JobQueue.run`, a failure turned into an :class:`ApiError` (its status by :func:`_status_of`)."""
        try:
            return await self.jobs.run(fn, *args)
        except ApiError:
            raise
        except Exception as e:
            status, message = _status_of(e)
            if status == 500:
                log.exception("prediction failed")
            raise ApiError(status, message) from e

    def model_info(self) -> dict[str, Any]:
        p, s = self.predictor, self.settings
        spec = p.spec
        record = p.record
        labels: dict[str, Any] = {"task": spec.task, "range": list(spec.label_range)}
        if not spec.is_binary:
            labels["label_7"] = {str(k): v for k, v in LABEL_7_NAMES.items()}
        labels["label_2"] = ["negative", "positive"]
        extraction = None
        if record:
            extraction = {k: record[k] for k in ("format", "extract", "feature_names", "seq_lens") if k in record}
        return {
            "version": __version__, "checkpoint": Path(s.checkpoint).name, "model": p.checkpoint.get("model_name"),
            "backend": p.backend, "spec": spec.to_dict(), "labels": labels, "videos": p.extractor is not None,
            "speech_recognition": bool(p.cfg is not None and p.cfg.asr.model), "extraction": extraction,
            "features": feature_keys(spec),
            "limits": {"max_upload_mb": s.max_upload_mb, "max_seconds": s.max_seconds,
                       "max_timeline_seconds": s.max_timeline_seconds, "queue": s.queue},
        }


def _status_of(err: Exception) -> tuple[int, str]:
    """The status and line of an exception raised while predicting."""
    if isinstance(err, ExtractError):
        message = str(err)
        return (415 if message.startswith(UNSUPPORTED) else 422), message
    if isinstance(err, (FeatureShapeError, CheckpointNotPredictable)):
        return 422, str(err)
    return 500, f"internal error ({type(err).__name__}); the service's log has the details"


def _validation_line(err: RequestValidationError) -> str:
    first = err.errors()[0]
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    if loc[:1] == ["video"]:
        return "no video: send the file in the multipart form field 'video'"
    where = loc[0] + "".join(f"[{x}]" for x in loc[1:]) if loc else "body"
    return f"{where}: {first.get('msg', 'invalid')}".replace("\n", " ")


def _segments(value: str) -> str | float:
    try:
        return parse_segments(value, option="segments", minimum=MIN_WINDOW_S)
    except ValueError as e:
        raise ApiError(422, str(e)) from None


def create_app(settings: ServeSettings) -> FastAPI:
    """The application for ``settings``; the model loads when it starts (uvicorn's lifespan)."""
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            service.start()
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(title="emodistill", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Multimodal sentiment of a video (language, audio, vision) with a DMD-family model. "
                              "With a token, every /v1 endpoint but /v1/health needs 'Authorization: Bearer'.")
    app.state.service = service
    # documents the scheme (Swagger's "Authorize" button); the check itself is the Guard middleware's
    bearer = [Depends(HTTPBearer(auto_error=False))] if settings.token else []
    app.add_middleware(Guard, token=settings.token, max_bytes=settings.max_upload_bytes, jobs=service.jobs,
                       upload_timeout=settings.upload_timeout, loopback_only=settings.loopback)
    static = resources.files("emodistill.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.mount("/swagger", StaticFiles(directory=str(resources.files("fastapi_offline") / "static")), name="swagger")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return JSONResponse({"error": err.message, "status": err.status}, err.status, headers=err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):  # 404, 405, a body that cannot be parsed
        message = str(err.detail).replace("\n", " ")
        return JSONResponse({"error": message, "status": err.status_code}, err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        return JSONResponse({"error": _validation_line(err), "status": 422}, 422)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(str(static / "index.html"), media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="emodistill API",
                                   swagger_js_url="/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/swagger/swagger-ui.css",
                                   swagger_favicon_url="/swagger/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})  # no call to swagger.io

    @app.get("/v1/health", response_model=Health)
    async def health():
        """200 once the model is loaded; no token needed."""
        return {"status": "ready", "version": __version__,
                "queue": {"admitted": service.jobs.admitted, "capacity": service.jobs.capacity}}

    @app.get("/v1/model", response_model=ModelInfo, responses={401: {"model": ErrorBody}}, dependencies=bearer)
    async def model():
        """The model, its data spec, labels, extraction record, backend and the service's limits."""
        return service.model_info()

    @app.post("/v1/predict", responses={200: {"model": Prediction}, **ERRORS}, dependencies=bearer)
    async def predict(video: Annotated[UploadFile, File(description="the video file (mp4, webm, mkv, ...)")],
                      transcript: Annotated[str | None, Form(description=TRANSCRIPT_HELP)] = None):
        """The sentiment of one video: what `emodistill predict VIDEO` prints, plus version and timings."""
        return JSONResponse(await service.upload_job(video, transcript, service.predict_video))

    @app.post("/v1/timeline", responses={200: {"model": Timeline}, **ERRORS}, dependencies=bearer)
    async def timeline(video: Annotated[UploadFile, File(description="a long video")],
                       transcript: Annotated[str | None, Form(description=TRANSCRIPT_HELP)] = None,
                       segments: Annotated[str, Form(description="'auto' (utterances) or a window in seconds")]
                       = "auto"):
        """A long video as scored segments: what `emodistill predict VIDEO --segments` prints."""
        return JSONResponse(await service.upload_job(video, transcript, service.timeline, _segments(segments)))

    @app.post("/v1/predict/features", responses={200: {"model": Prediction}, **ERRORS}, dependencies=bearer)
    async def predict_features(body: FeatureRequest):
        """The sentiment of one clip from its stored features (a row of its MMSA pickle), for any checkpoint."""
        t0 = time.perf_counter()
        arrays = body.model_dump(exclude_none=True)
        result, waited = await service.run(service.predictor.predict_arrays, arrays)
        result = {"version": __version__, **result}
        result["seconds"] = {**result["seconds"], "queue": round(waited, 4),
                             "request": round(time.perf_counter() - t0, 4)}
        return JSONResponse(result)

    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory for each worker process: the settings come from the environment (``emodistill serve``)."""
    if not log.handlers:  # one line per request on stderr (guard.py), beside uvicorn's own
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    return create_app(ServeSettings.from_env())


__all__ = ["ApiError", "Service", "app_from_env", "create_app"]
