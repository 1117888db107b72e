"""Read-ahead for Arrow record batch streams: the next batches are fetched from the
database in a background thread while the current one is written, so reading and
encoding overlap. Memory stays bounded: at most ``depth`` batches wait in the queue.

Example::

    cursor.execute(query)
    with ReadAhead(cursor.fetch_record_batch(), depth=2) as reader:
        for batch in reader:
            writer.write_batch(batch)
    cursor.close()      # the read-ahead thread has stopped: the cursor is idle
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import pyarrow as pa

_END = object()


class ReadAhead:
    """A context manager yielding a reader over ``reader``'s batches, read ahead by a thread.

    Errors of the underlying reader are raised by the returned one, at the batch where
    they happened. Leaving the block (normally, early, or by an error) stops the thread
    and waits for it, so the underlying reader is idle when the caller closes its cursor.
    """

    def __init__(self, reader: pa.RecordBatchReader, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._source = reader
        self._slots: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="fstore-read-ahead", daemon=True)

    def _produce(self) -> None:
        try:
            for batch in self._source:
                while not self._stop.is_set():
                    try:
                        self._slots.put(batch, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._slots.put(_END)
        except BaseException as exc:  # handed to the consumer
            if not self._stop.is_set():
                self._slots.put(exc)

    def _consume(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self._slots.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def __enter__(self) -> pa.RecordBatchReader:
        self._thread.start()
        return pa.RecordBatchReader.from_batches(self._source.schema, self._consume())

    def close(self) -> None:
        """Stop reading ahead and wait for the thread (at most the batch it is reading)."""
        self._stop.set()
        while self._thread.is_alive():  # unblock a producer waiting for a free slot
            try:
                self._slots.get(timeout=0.05)
            except queue.Empty:
                pass
        if self._thread.ident is not None:
            self._thread.join()

    def __exit__(self, *exc: object) -> None:
        self.close()
