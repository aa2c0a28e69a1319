"""``emodistill serve``: the HTTP service and web page of one checkpoint (:mod:`emodistill.serve`)."""

from __future__ import annotations

import argparse
import os
import sys

from emodistill.cli import common

DESCRIPTION = """\
Serve one checkpoint over HTTP (FastAPI on uvicorn; needs the serve extra) with a web page at / (upload a
video or record one from the webcam; live mode scores a window every few seconds) and the API documentation
at /docs, both served by the package itself (no internet needed).

  POST /v1/predict            multipart 'video' (+ 'transcript'): what `emodistill predict VIDEO` prints
  POST /v1/predict/features   JSON arrays of one clip named as the MMSA data keys (text, audio, vision, ...)
  POST /v1/timeline           multipart 'video' (+ 'transcript', 'segments'): a long video as a timeline
  GET  /v1/model              model, data spec, labels, extraction record, backend, limits
  GET  /v1/health             200 once the model is loaded (no token needed)

Errors are JSON {"error": one line, "status": code}: 401 token, 408 body too slow, 411/413 body length, 415
not a video, 422 bad request (empty upload, too long, no face or no audio, wrong feature shapes), 503 queue
full (with Retry-After). Binds to 127.0.0.1 unless --host says otherwise; on loopback only requests naming a
loopback host are served. The webcam of the page needs a secure context: localhost, or https in front.
"""
FORMATTER = argparse.RawDescriptionHelpFormatter
PARENTS = [common.device_option("cpu", devices="cpu, cuda, cuda:N"), common.verbose_option(common.VIDEO_VERBOSE_HELP)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="best.ckpt (or its `emodistill export` .onnx file); videos need a checkpoint trained on a "
                        "data set made by `emodistill extract`, any checkpoint answers /v1/predict/features")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes, each loading the model and extraction models once (default 1)")
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on every /v1 endpoint but /v1/health "
                                   "(default: $EMODISTILL_SERVE_TOKEN if set, else no authentication)")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                   help="as in `emodistill predict` (default auto: ONNX Runtime for a .onnx file)")
    p.add_argument("--threads", type=int, help="PyTorch / ONNX Runtime threads per worker (default: cores / workers)")
    p.add_argument("--queue", type=int, default=4,
                   help="requests admitted at once per worker, running or waiting (default 4); more get 503")
    p.add_argument("--max-upload-mb", type=float, default=50.0, help="largest request body in MB (default 50)")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="longest video /v1/predict accepts, in seconds (default 60)")
    p.add_argument("--max-timeline-seconds", type=float, default=1800.0,
                   help="longest video /v1/timeline accepts, in seconds (default 1800)")
    p.add_argument("--upload-timeout", type=float, default=60.0,
                   help="seconds an admitted request may take to send its body (default 60); slower gets 408")
    p.add_argument("--tmp-dir", help="where uploads are written: a private directory per request, removed after "
                                     "it (default: the system's temporary directory)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from emodistill.extract.errors import require
    from emodistill.extract.logs import configure_third_party_logs
    from emodistill.serve.settings import SETTINGS_ENV, TOKEN_ENV, ServeSettings

    configure_third_party_logs(args.verbose)
    for module in ("fastapi", "uvicorn", "python_multipart", "fastapi_offline"):
        require(module, "serve", "`emodistill serve`")
    if args.workers < 1:
        raise ValueError(f"--workers: expected a number >= 1, found {args.workers}")
    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port: expected 1..65535, found {args.port}")
    if not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"--checkpoint: no such file: {args.checkpoint}")
    if args.tmp_dir and not Path(args.tmp_dir).is_dir():
        raise FileNotFoundError(f"--tmp-dir: no such directory: {args.tmp_dir}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads: expected a number >= 1, found {args.threads}")
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    settings = ServeSettings(
        checkpoint=str(Path(args.checkpoint).resolve()), backend=args.backend, device=args.device, threads=threads,
        token=args.token or os.environ.get(TOKEN_ENV) or None, max_upload_mb=args.max_upload_mb,
        max_seconds=args.max_seconds, max_timeline_seconds=args.max_timeline_seconds, queue=args.queue,
        upload_timeout=args.upload_timeout, tmp_dir=args.tmp_dir, host=args.host,
    )
    _check_checkpoint(settings.checkpoint)
    _check_port(args.host, args.port)
    os.environ[SETTINGS_ENV] = settings.to_env()  # every worker process builds the app from these
    if settings.token:
        os.environ[TOKEN_ENV] = settings.token
    import uvicorn

    auth = "token required" if settings.token else "no token"
    print(f"emodistill serve: {Path(args.checkpoint).name} on http://{args.host}:{args.port}/ ({args.workers} "
          f"worker(s), {auth}); API documentation at /docs", file=sys.stderr)
    uvicorn.run("emodistill.serve.app:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="info" if args.verbose else "warning", access_log=args.verbose,
                timeout_graceful_shutdown=5)
    return 0


def _check_checkpoint(path: str) -> None:
    """Fail here, in one line, on a file that is not a checkpoint, rather than in every worker."""
    if path.lower().endswith(".onnx"):
        from emodistill.inference.export import read_metadata

        read_metadata(path)
    else:
        from emodistill.checkpoint import read_checkpoint

        read_checkpoint(path)


def _check_port(host: str, port: int) -> None:
    """One line now rather than uvicorn's log after the models have loaded."""
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise OSError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None
