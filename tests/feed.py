"""A real HTTP server for the HTTP source's tests: a paginated JSON feed ordered by a
`modified` cursor, that can change while a pipeline reads it and fail on request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    since: float | None
    limit: int
    status: int
    at: float  # epoch seconds, when it arrived


class Feed:
    """GET /items?since=<modified>&limit=<n> -> {"items": [...]} ascending by `modified`.
    `fail(status, retry_after=None)` or `fail("broken")` queues answers for the next
    requests; `delay` slows every answer."""

    def __init__(self, count: int = 0, delay: float = 0.0) -> None:
        self._lock = threading.Lock()
        self.items: dict[str, dict[str, Any]] = {}
        self._clock = 0
        self.delay = delay
        self.requests: list[Request] = []
        self._failures: list[tuple[int | str, float | None]] = []
        self.add(count)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="feed",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/items"

    def __enter__(self) -> Feed:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()

    def down(self) -> None:
        """The server goes away: its port refuses connections until `up`."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def up(self) -> None:
        """The server is back, on the same port, with the same items."""
        port = self._server.server_address[1]
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="feed",
                                        daemon=True)
        self._thread.start()

    def add(self, count: int) -> list[str]:
        with self._lock:
            start = len(self.items)
            ids = [f"item-{n:05d}" for n in range(start, start + count)]
            for ident in ids:
                self.items[ident] = {"id": ident, "modified": self._tick(), "price": 10}
            return ids

    def change(self, ids: Iterable[str], **fields: Any) -> None:
        with self._lock:
            for ident in ids:
                self.items[ident] = {**self.items[ident], **fields, "modified": self._tick()}

    def put(self, item: dict[str, Any]) -> None:
        """An item as given (for items without an id or cursor)."""
        with self._lock:
            self.items[f"raw-{self._clock}"] = {**item, "modified": self._tick()}

    def fail(self, status: int | str, retry_after: float | None = None) -> None:
        with self._lock:
            self._failures.append((status, retry_after))

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _page(self, since: float | None, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            newer = [i for i in self.items.values()
                     if since is None or i["modified"] > since]
        return sorted(newer, key=lambda i: i["modified"])[:limit]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server calls it by this name
                arrived = time.time()
                query = parse_qs(urlsplit(self.path).query)
                since = float(query["since"][0]) if "since" in query else None
                limit = int(query.get("limit", ["100"])[0])
                if feed.delay:
                    time.sleep(feed.delay)  # a slow server, on purpose
                with feed._lock:
                    failure = feed._failures.pop(0) if feed._failures else None
                    # Recorded before the answer is sent: a client that has its answer finds
                    # its request here.
                    status = 200 if failure is None or failure[0] == "broken" else failure[0]
                    assert isinstance(status, int)
                    feed.requests.append(Request(since, limit, status, arrived))
                if failure is None:
                    self._send(200, json.dumps({"items": feed._page(since, limit)}).encode())
                elif failure[0] == "broken":
                    self._send(200, b"<html>upstream proxy error</html>")
                else:
                    self._send(status, b'{"error": "try later"}', failure[1])

            def _send(self, status: int, body: bytes, retry_after: float | None = None
                      ) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                if retry_after is not None:
                    self.send_header("retry-after", f"{retry_after:g}")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler
