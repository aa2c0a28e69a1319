"""The service's options, shared by the command line and every uvicorn worker process (through one
environment variable, since ``--workers N`` starts each worker from an import string)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields

SETTINGS_ENV = "EMODISTILL_SERVE_SETTINGS"
TOKEN_ENV = "EMODISTILL_SERVE_TOKEN"
"""The bearer token when ``--token`` is not given (so it need not appear in the process list)."""


@dataclass(frozen=True)
class ServeSettings:
    """Options of ``emodistill serve`` (each is a command-line flag of the same name).

    Attributes:
        checkpoint: ``best.ckpt`` or its ``emodistill export`` ``.onnx`` file.
        backend: ``auto``, ``torch`` or ``onnx`` (as ``emodistill predict --backend``).
        device: where the PyTorch backend runs.
        threads: PyTorch / ONNX Runtime threads per worker process (default: cores / workers).
        token: the bearer token every endpoint but ``/v1/health`` requires; None: no authentication.
        max_upload_mb: largest accepted request body, in MB (10^6 bytes); larger gets 413.
        max_seconds: longest accepted video for ``/v1/predict``; longer gets 422.
        max_timeline_seconds: longest accepted video for ``/v1/timeline``.
        queue: requests admitted at once per worker process (running + waiting); one more gets 503.
        upload_timeout: seconds a request may take to send its body once admitted; slower gets 408 (a stalled
            client must not hold a place in the queue).
        tmp_dir: where the private upload directories are made (default: the system's temporary directory).
        host: the address bound; on a loopback address only requests naming a loopback host are served
            (a web page from elsewhere cannot reach the service through DNS rebinding).
    """

    checkpoint: str
    backend: str = "auto"
    device: str = "cpu"
    threads: int | None = None
    token: str | None = None
    max_upload_mb: float = 50.0
    max_seconds: float = 60.0
    max_timeline_seconds: float = 1800.0
    queue: int = 4
    upload_timeout: float = 60.0
    tmp_dir: str | None = None
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_seconds", "max_timeline_seconds", "upload_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')}: expected a number > 0, found {getattr(self, name)}")
        if self.queue < 1:
            raise ValueError(f"--queue: expected a number >= 1, found {self.queue}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads: expected a number >= 1, found {self.threads}")
        if self.token is not None and not (self.token.isascii() and self.token.isprintable()
                                           and self.token == self.token.strip() and self.token):
            raise ValueError("--token: expected printable ASCII without spaces at either end (it travels in an "
                             "HTTP header), found another string")

    @property
    def loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    def to_env(self) -> str:
        """JSON for :data:`SETTINGS_ENV`, without the token (workers read it from :data:`TOKEN_ENV`)."""
        return json.dumps({k: v for k, v in asdict(self).items() if k != "token"})

    @classmethod
    def from_env(cls) -> ServeSettings:
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            raise ValueError(f"{SETTINGS_ENV} is not set: start the service with `emodistill serve`")
        values = json.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known}, token=os.environ.get(TOKEN_ENV) or None)
