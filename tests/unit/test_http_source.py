"""The HTTP source against a real HTTP server (no broker): paging, the cursor, backoff with
Retry-After, bad answers as rejects, and its options checked at their file positions."""

from __future__ import annotations

import time

import pytest

from tests.feed import Feed
from uee.connectors.base import SourceBatch
from uee.connectors.http import HttpOptions, HttpSource
from uee.dsl.loader import load_text
from uee.dsl.validate import validate_documents


def source(feed: Feed, **options: object) -> HttpSource:
    made = HttpSource("http:test", HttpOptions.model_validate({
        "url": feed.url, "cursor_field": "modified", "id_field": "id", "items": "items",
        "urn": {"provider": "demo", "type": "item"}, "interval": 0.05, **options}))
    made.open()
    return made


def poll_until(made: HttpSource, deadline: float = 10) -> SourceBatch:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        batch = made.poll(1000, 0.05)
        if batch is not None:
            return batch
    raise AssertionError("no batch")


def test_pages_until_a_short_page_then_waits_for_the_interval() -> None:
    with Feed(250) as feed:
        made = source(feed)
        sizes = [len(poll_until(made)) for _ in range(3)]
        assert sizes == [100, 100, 50] and made.caught_up()
        assert [r.since for r in feed.requests] == [None, 100, 200]
        assert made.poll(1000, 0.01) is None  # within the interval: no request
        assert len(feed.requests) == 3
        feed.add(5)
        batch = poll_until(made)
        assert len(batch) == 5 and batch.commit_token == 255
        assert batch.urns == [f"uee::demo::item::item-{n:05d}" for n in range(250, 255)]
        assert batch.keys[0] == b"item-00250"
        made.close()


def test_resumes_from_a_checkpoint_cursor() -> None:
    with Feed(120) as feed:
        made = source(feed)
        made.resume(made.cursor(100))
        batch = poll_until(made)
        assert len(batch) == 20 and feed.requests[0].since == 100
        made.close()


def test_503_and_429_wait_and_say_why_and_until_when() -> None:
    with Feed(10) as feed:
        feed.fail(503)
        feed.fail(429, retry_after=0.6)
        made = source(feed)
        assert made.poll(1000, 0.01) is None
        waiting = made.backoff()
        assert waiting is not None and "HTTP 503" in waiting[0]
        assert made.poll(1000, 1.0) is None  # the backoff (0.5 s) passes, then a 429
        first_429 = time.monotonic()
        waiting = made.backoff()
        assert waiting is not None and "HTTP 429" in waiting[0] and "0.6s" in waiting[0]
        batch = poll_until(made)
        assert time.monotonic() - first_429 >= 0.5  # Retry-After was honoured
        assert len(batch) == 10 and made.backoff() is None
        made.close()


def test_a_server_that_does_not_answer_is_waited_for() -> None:
    with Feed(0) as feed:
        url = feed.url
    made = HttpSource("http:gone", HttpOptions.model_validate({
        "url": url, "cursor_field": "modified", "id_field": "id", "timeout": 0.5}))
    made.open()
    assert made.poll(10, 0.01) is None
    waiting = made.backoff()
    assert waiting is not None and "ConnectError" in waiting[0]
    made.close()


def test_bad_bodies_and_bad_items_become_rejects_with_their_raw_bytes() -> None:
    with Feed(2) as feed:
        feed.put({"price": 1})  # no id
        feed.put({"id": "a::b", "price": 1})  # not a URN id
        feed.fail("broken")
        made = source(feed)
        batch = made.poll(1000, 0.01)
        assert batch is not None and batch.values == [b"<html>upstream proxy error</html>"]
        assert batch.rejects is not None and batch.rejects[0][0] == "HTTP_BAD_BODY"
        assert made.backoff() is not None  # the same request again, after a backoff
        batch = poll_until(made)
        assert len(batch) == 4 and batch.rejects is not None
        assert {i: code for i, (code, _) in batch.rejects.items()} == {
            2: "HTTP_ITEM_INVALID", 3: "HTTP_ITEM_INVALID"}
        assert "no 'id'" in batch.rejects[2][1] and "'::'" in batch.rejects[3][1]
        assert batch.commit_token == 4  # bad items move the cursor too: they are handled
        made.close()


def test_the_same_broken_page_is_dead_lettered_once_however_often_it_comes_back() -> None:
    with Feed(1) as feed:
        feed.fail("broken")
        feed.fail("broken")
        made = source(feed, max_backoff=0.05)
        first = made.poll(1000, 0.01)
        assert first is not None and first.rejects is not None
        assert poll_until_request(made, feed, 2) is None  # the same body: backed off only
        assert made.backoff() is not None
        assert len(poll_until(made)) == 1  # the server is back
        made.close()


def poll_until_request(made: HttpSource, feed: Feed, count: int) -> SourceBatch | None:
    """Poll until the server saw `count` requests; the last poll's batch."""
    end = time.monotonic() + 10
    while time.monotonic() < end:
        batch = made.poll(1000, 0.05)
        if len(feed.requests) >= count:
            return batch
    raise AssertionError(f"fewer than {count} requests")


def test_a_client_error_says_what_to_check_and_a_slow_server_times_out() -> None:
    with Feed(1) as feed:
        feed.fail(404)
        made = source(feed, timeout=0.3)
        assert made.poll(1000, 0.01) is None
        waiting = made.backoff()
        assert waiting is not None and "HTTP 404" in waiting[0]
        assert "check source.http.url" in waiting[0]
        feed.delay = 1.0  # from now on, slower than the timeout
        assert made.poll(1000, 1.0) is None  # the backoff (0.5 s) passes, then a timeout
        waiting = made.backoff()
        assert waiting is not None and "ReadTimeout" in waiting[0], waiting
        made.close()


@pytest.mark.parametrize("options, code, says", [
    ("{url: 'ftp://x', cursor_field: m, id_field: id}", "DSL_WRONG_TYPE", "http"),
    ("{url: 'http://x', id_field: id}", "DSL_MISSING_KEY", "cursor_field"),
    ("{url: 'http://x', cursor_field: m, id_field: id, page_sise: 3}", "DSL_UNKNOWN_KEY",
     "page_size"),
    ("{url: 'http://x', cursor_field: m, id_field: id, urn: {provider: 'a b'}}",
     "DSL_WRONG_TYPE", "provider"),
])
def test_options_are_checked_where_the_file_sets_them(options: str, code: str,
                                                      says: str) -> None:
    text = f"pipeline: p\nsource:\n  http: {options}\nsink: {{kafka: {{topic: out}}}}\n"
    document = load_text(text, "p.yaml")
    assert document is not None
    _, problems = validate_documents([document])
    assert problems, options
    rendered = problems[0].render()
    assert rendered.startswith("p.yaml:3:") and f"error[{code}]" in rendered, rendered
    assert says in rendered, rendered
