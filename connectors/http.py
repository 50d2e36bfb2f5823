"""An incremental HTTP JSON source: pages through a feed ordered by a cursor field, and
resumes where the last checkpoint left it.

    GET <url>?<cursor_param>=<cursor>&<page_size_param>=<page_size>

The server returns the items whose `cursor_field` is greater than the cursor, ascending
(the NVD CVE API's lastModStartDate pattern). uee pages until a page is shorter than
`page_size`, then polls again every `interval` seconds. The cursor a checkpoint keeps is
the largest `cursor_field` whose records were delivered, so a re-run imports only what
changed. Items with the same cursor value must not be split across pages (the server's
contract: with `>` they would be skipped).

Nothing the server does stops the provider: connection errors, timeouts, 5xx and 429 wait
(exponential backoff, or Retry-After) in WAITING_BACKOFF; a body that is not JSON and items
without the cursor or id field go to the DLQ with a code and the raw bytes.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
from pydantic import BaseModel, ConfigDict, Field, field_validator

from uee.connectors.base import RecordOrigin, Source, SourceBatch, SourceConnector
from uee.urn import HEADER, Urn, check_name, id_problem

BAD_BODY = "HTTP_BAD_BODY"
BAD_ITEM = "HTTP_ITEM_INVALID"
EXCERPT = 200


class UrnParts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    provider: str = Field(description="the URN's provider, e.g. nvd")
    type: str = Field("item", description="the URN's type, e.g. cve")

    @field_validator("provider", "type")
    @classmethod
    def _name(cls, value: str, info: Any) -> str:
        try:
            return check_name(value, info.field_name)
        except Exception as exc:  # a UrnError: pydantic reports ValueErrors at the position
            raise ValueError(str(exc)) from exc


class HttpOptions(BaseModel):
    """`source: {http: {url: ..., cursor_field: modified, id_field: id, ...}}`"""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    url: str = Field(description="http(s) URL of the feed")
    cursor_field: str = Field(min_length=1, description="each item's field that orders the feed")
    id_field: str = Field(min_length=1, description="each item's id, for URNs and diffing")
    cursor_param: str = Field("since", min_length=1, description="query parameter of the cursor")
    items: str | None = Field(None, min_length=1,
                              description="field of the response holding the list (none: the "
                              "body is the list)")
    urn: UrnParts | None = Field(None, description="URN parts (default: the URL's host, item)")
    page_size: int = Field(100, ge=1, le=100_000, description="items asked per request")
    page_size_param: str = Field("limit", min_length=1, description="query parameter of it")
    interval: float = Field(5.0, gt=0, allow_inf_nan=False,
                            description="seconds between polls once caught up")
    timeout: float = Field(10.0, gt=0, allow_inf_nan=False, description="seconds per request")
    max_backoff: float = Field(60.0, gt=0, allow_inf_nan=False,
                               description="longest wait between retries, in seconds")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    def urn_parts(self) -> UrnParts:
        if self.urn is not None:
            return self.urn
        host = urlsplit(self.url).hostname or "http"
        return UrnParts(provider="".join(c if c.isalnum() or c in "._-" else "-"
                                         for c in host), type="item")


class HttpSource(Source):
    external_cursor = True

    def __init__(self, name: str, options: HttpOptions) -> None:
        self.name = name
        self.options = options
        self._urn = options.urn_parts()
        self._client: httpx.Client | None = None
        self._cursor: Any = None  # where the next request starts
        self._committed: Any = None
        self._next_poll = 0.0  # monotonic; after a short page, when to ask again
        self._caught_up = False
        self._waiting: tuple[str, float] | None = None  # (why, until epoch) while backing off
        self._failures = 0  # consecutive failed requests, for the backoff
        self._bad_body: bytes | None = None  # the broken page last dead-lettered
        self._encode = msgspec.json.Encoder().encode

    def open(self) -> None:
        self._client = httpx.Client(timeout=self.options.timeout,
                                    headers={"accept": "application/json"})

    def resume(self, cursor: Any) -> None:
        if isinstance(cursor, dict) and "since" in cursor:
            self._cursor = self._committed = cursor["since"]

    def cursor(self, token: Any) -> Any:
        return {"since": token}

    def backoff(self) -> tuple[str, float] | None:
        return self._waiting

    def caught_up(self) -> bool:
        return self._caught_up

    def poll(self, max_records: int, timeout: float) -> SourceBatch | None:
        assert self._client is not None, "open() first"
        now = time.monotonic()
        wait_until = self._next_poll
        if now < wait_until:
            time.sleep(min(timeout, wait_until - now))  # pacing between requests
            if time.monotonic() < wait_until:
                return None
        params = {self.options.page_size_param: str(min(max_records, self.options.page_size))}
        if self._cursor is not None:
            params[self.options.cursor_param] = str(self._cursor)
        try:
            response = self._client.get(self.options.url, params=params)
        except httpx.HTTPError as exc:
            self._back_off(f"{type(exc).__name__}: {exc or 'no answer'} from "
                           f"{self.options.url}", None)
            return None
        if response.status_code >= 400:  # 429 and 5xx pass; a 4xx is shown until fixed
            self._back_off(f"HTTP {response.status_code} from {self.options.url}"
                           f"{_what_to_check(response.status_code)}",
                           _retry_after(response.headers.get("retry-after")))
            return None
        return self._page(response, int(params[self.options.page_size_param]))

    def _back_off(self, reason: str, retry_after: float | None) -> None:
        self._failures += 1
        delay = retry_after if retry_after is not None else min(
            self.options.max_backoff, 0.5 * 2 ** (self._failures - 1))
        self._next_poll = time.monotonic() + delay
        self._waiting = (f"{reason}; retrying in {delay:g}s", time.time() + delay)
        self._caught_up = False

    def _recovered(self) -> None:
        self._failures = 0
        self._waiting = None
        self._bad_body = None

    def _page(self, response: httpx.Response, asked: int) -> SourceBatch | None:
        body = response.content
        try:
            data = msgspec.json.decode(body)
            items = data if self.options.items is None else data[self.options.items]
            if not isinstance(items, list):
                raise TypeError("not a list")
        except (msgspec.DecodeError, KeyError, TypeError) as exc:
            # The page is lost to us, not the feed: it goes to the DLQ, and the same request
            # is made again after a backoff.
            where = "" if self.options.items is None else f" field {self.options.items!r}"
            reason = f"the response{where} is not a JSON list ({exc})"
            self._back_off(reason, None)
            if body == self._bad_body:
                return None  # the same broken page again: it is in the DLQ once already
            self._bad_body = body
            return self._batch([None], [body], [None], {0: (BAD_BODY, f"{reason}; body starts "
                                                            f"{body[:EXCERPT]!r}")}, response)
        self._recovered()
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        urns: list[str | None] = []
        rejects: dict[int, tuple[str, str]] = {}
        cursor = self._cursor
        for item in items:
            raw = self._encode(item)
            problem = self._problem(item)
            if isinstance(item, dict) and item.get(self.options.cursor_field) is not None:
                cursor = item[self.options.cursor_field]  # a bad item is handled all the same
            if problem:
                rejects[len(values)] = (BAD_ITEM, f"{problem}; item starts {raw[:EXCERPT]!r}")
                keys.append(None)
                urns.append(None)
            else:
                ident = str(item[self.options.id_field])
                keys.append(ident.encode())
                urns.append(str(Urn(self._urn.provider, self._urn.type, ident)))
            values.append(raw)
        short = len(items) < asked
        if not short and cursor == self._cursor:
            # A full page that does not move the cursor would come back forever.
            self._back_off(f"a full page of {len(items)} items did not move the cursor past "
                           f"{self._cursor!r}", None)
        self._cursor = cursor
        self._caught_up = short
        if short:
            self._next_poll = time.monotonic() + self.options.interval
        if not values:
            return None
        return self._batch(keys, values, urns, rejects, response)

    def _problem(self, item: Any) -> str | None:
        if not isinstance(item, dict):
            return "the item is not a JSON object"
        for field in (self.options.cursor_field, self.options.id_field):
            if item.get(field) is None:
                return f"the item has no {field!r}"
        problem = id_problem(str(item[self.options.id_field]))
        return f"its id cannot be a URN id: it {problem}" if problem else None

    def _batch(self, keys: list[bytes | None], values: list[bytes | None],
               urns: list[str | None], rejects: dict[int, tuple[str, str]],
               response: httpx.Response) -> SourceBatch:
        url = str(response.url)

        def origin_of(index: int) -> RecordOrigin:
            headers = [("uee.source.url", url.encode())]
            if urns[index] is not None:
                headers.append((HEADER, str(urns[index]).encode()))
            return RecordOrigin(None, None, None, headers)

        return SourceBatch(keys, values, self._cursor, origin_of,
                           urns=[u or "" for u in urns], rejects=rejects or None)

    def commit(self, batch: SourceBatch) -> None:
        self._committed = batch.commit_token

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _what_to_check(status: int) -> str:
    """What a user can do about an HTTP error: a 4xx other than 429 will not pass by itself."""
    if status in (401, 403):
        return ": the server refuses uee; check the credentials or access it expects"
    if status in (404, 410):
        return ": check source.http.url"
    if 400 <= status < 500 and status not in (408, 429):
        return ": the server refuses the request; check source.http's url and parameters"
    return ""


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _describe(options: HttpOptions) -> str:
    return f"http {options.url} (cursor {options.cursor_field}, id {options.id_field})"


CONNECTOR = SourceConnector(
    "http", HttpOptions, "an HTTP JSON feed paged by a cursor field, resumed from checkpoints",
    create=HttpSource, describe=_describe)
