"""Request smuggling and trickled bodies at the agent's HTTP/1.1 layer (serve_http alone).

* ``Content-Length`` with ``Transfer-Encoding``: RFC 9112 §6.3 lets a server reject such a
  request and then requires it to close; answering it, and then what follows as another
  request, is how a request is smuggled past a proxy that reads the framing the other way.
* A body sent one byte at a time, each byte within the per-read timeout, is shed with 408 at
  the request's total deadline.
"""

from __future__ import annotations

import trio

from tests.agent.test_http_server import body_of, read_response, rest_until_closed, serving, status

TRICKLE_INTERVAL_S = 0.5
REQUEST_TIMEOUT_S = 2.0  # small, so the test is quick; production: REQUEST_TIMEOUT_SECONDS
READ_TIMEOUT_S = 5.0  # well above the trickle interval: each read alone is in time


async def test_content_length_with_transfer_encoding_is_refused_and_closed() -> None:
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    async with serving() as served:
        stream = await served.connect()
        await stream.send_all(
            b"POST /front HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s" % (5 + len(smuggled), smuggled)
        )
        events = await read_response(stream)
        rest = await rest_until_closed(stream)
    assert status(events) == [400]
    assert "Transfer-Encoding" in body_of(events)["status"]
    assert rest == b""  # no second response: the smuggled request was never read
    assert served.api.seen == []


async def test_a_trickled_body_is_shed_at_the_total_deadline() -> None:
    async with serving(request_timeout=REQUEST_TIMEOUT_S, read_timeout=READ_TIMEOUT_S) as served:
        stream = await served.connect()
        await stream.send_all(b"POST /slowly HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")

        async def trickle() -> None:
            for _ in range(1000):
                await trio.sleep(TRICKLE_INTERVAL_S)
                try:
                    await stream.send_all(b"x")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            events = await read_response(stream, b"POST")
            rest = await rest_until_closed(stream)
            nursery.cancel_scope.cancel()
    assert status(events) == [408]
    assert body_of(events)["code"] == 408
    assert rest == b""
    assert served.api.seen == []


IDLE_FLOOD = 20
CAP = 4


async def test_at_the_cap_idle_connections_make_room_for_a_request() -> None:
    """Plain HTTP: connections that never send make way; the keep-alive timeout is far off,
    so only the cap's shedding can let the real request through in time."""
    async with serving(max_connections=CAP, keep_alive_timeout=3600.0) as served:
        idle = [await served.connect() for _ in range(IDLE_FLOOD)]
        client = await served.connect()
        await client.send_all(b"GET /real HTTP/1.1\r\nHost: x\r\n\r\n")
        events = await read_response(client)
        closed = [await rest_until_closed(stream) for stream in idle[:-CAP]]
    assert status(events) == [200]
    assert closed == [b""] * (IDLE_FLOOD - CAP)
    assert [t for _m, t, _b in served.api.seen] == [b"/real"]
