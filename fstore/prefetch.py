"""Read-ahead for Arrow record batch streams: the next batches are fetched from the
database in a background thread while the current one is written, so reading and
encoding overlap. Memory stays bounded: at most ``depth`` batches wait in the queue.

Example::

    reader = prefetched(cursor.fetch_record_batch(), depth=2)
    for batch in reader:
        writer.write_batch(batch)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import pyarrow as pa

_END = object()


def prefetched(reader: pa.RecordBatchReader, depth: int = 2) -> pa.RecordBatchReader:
    """A reader yielding the batches of ``reader``, read ahead by a background thread.

    Errors of the underlying reader are raised by the returned one, at the batch where
    they happened. Stopping early (or an error while consuming) stops the thread and
    waits for it, so the underlying reader is idle when the caller closes its cursor.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in reader:
                while not stop.is_set():
                    try:
                        slots.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_END)
        except BaseException as exc:  # handed to the consumer
            if not stop.is_set():
                slots.put(exc)

    thread = threading.Thread(target=produce, name="fstore-prefetch", daemon=True)

    def consume() -> Iterator[pa.RecordBatch]:
        thread.start()
        try:
            while True:
                item = slots.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting for a free slot
                try:
                    slots.get(timeout=0.1)
                except queue.Empty:
                    pass
            thread.join()

    return pa.RecordBatchReader.from_batches(reader.schema, consume())
