"""``emodistill serve`` in a child process on a free loopback port, for tests, benchmarks and notebooks:

    with ServiceProcess(checkpoint, "--queue", "8") as service:
        requests.get(service.url + "/v1/health")

The child's stderr goes to ``service.log`` (a file); the process is stopped (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServiceProcess:
    """A running ``emodistill serve --checkpoint CHECKPOINT ARGS...`` bound to 127.0.0.1.

    Args:
        checkpoint: the checkpoint to serve.
        args: further ``emodistill serve`` options.
        env: extra environment variables of the child.
        timeout: seconds to wait for ``/v1/health``.
    """

    def __init__(self, checkpoint: str | Path, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 180.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "emodistill", "serve", "--checkpoint", str(checkpoint),
                        "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.env = {**os.environ, **(env or {})}
        self.timeout = timeout
        self.log = Path(tempfile.mkstemp(prefix="emodistill-serve-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ServiceProcess:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"emodistill serve exited with {self.process.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/v1/health", timeout=2) as r:
                    if json.load(r).get("status") == "ready":
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"emodistill serve was not ready after {self.timeout:g} s: "
                           f"{self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __exit__(self, *exc) -> None:
        self.stop()

    def output(self) -> str:
        """What the service has written to stdout/stderr so far."""
        return self.log.read_text(errors="replace")
