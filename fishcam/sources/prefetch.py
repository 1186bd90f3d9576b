"""Decode ahead on a thread: a file's frames are read while the previous ones are processed.

OpenCV releases the GIL while decoding, so this overlaps decoding with detection and encoding.
The queue is bounded (memory stays flat); every frame is kept, in order: this is for files and
folders, where nothing may be dropped. Live sources have their own reader (sources/live.py).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")

_END = object()


def prefetch(items: Iterable[T], depth: int = 8) -> Generator[T, None, None]:
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(exc)
            return
        buffer.put(_END)

    thread = threading.Thread(target=produce, name="fishcam-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
