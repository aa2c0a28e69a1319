"""The bounded pool the model runs in: one thread per worker process (a Predictor keeps per-model state and
is not shared between threads), and at most ``capacity`` requests admitted at once, running or waiting.

A request is admitted (:meth:`JobQueue.admit`) before its body is read, so a full queue costs neither
memory nor disk: the caller answers 503 with ``Retry-After`` (:meth:`JobQueue.retry_after`).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class JobQueue:
    """Admission count plus a one-thread executor.

    Args:
        capacity: requests admitted at once (running + waiting).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._admitted = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emodistill-model")
        self._mean_s = 1.0  # running mean of a job's seconds, for Retry-After
        self.completed = 0
        self.refused = 0

    def admit(self) -> bool:
        """Take a place if one is free."""
        with self._lock:
            if self._admitted >= self.capacity:
                self.refused += 1
                return False
            self._admitted += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._admitted -= 1

    @property
    def admitted(self) -> int:
        return self._admitted

    def retry_after(self) -> int:
        """Whole seconds until a place is likely free: the queue's length times the mean job time."""
        return max(1, math.ceil(self._admitted * self._mean_s))

    async def run(self, fn: Callable[..., T], *args: Any) -> tuple[T, float]:
        """``fn(*args)`` on the model thread; returns its result and the seconds it waited for the thread."""
        queued = time.perf_counter()
        started: list[float] = []

        def job() -> T:
            started.append(time.perf_counter())
            try:
                return fn(*args)
            finally:
                self._mean_s = 0.8 * self._mean_s + 0.2 * (time.perf_counter() - started[0])
                self.completed += 1

        result = await asyncio.get_running_loop().run_in_executor(self._executor, job)
        return result, started[0] - queued

    def submit(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the model thread, synchronously (start-up: models load where they will run)."""
        return self._executor.submit(fn, *args).result()

    def shutdown(self) -> None:
        """Cancel the waiting jobs, let the running one finish."""
        self._executor.shutdown(wait=True, cancel_futures=True)
