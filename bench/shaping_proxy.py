"""A shaping proxy on the loopback for the bench: takes HTTP/1.1 requests from a client (the vid2mp3 command, a
browser), sends them on to the local stack's functions through a token bucket (a user's uplink of so many Mbit/s),
hands back the answers with the functions' absolute URLs rewritten to its own, and counts the bytes each way.

Two kinds of listener, any number of each, all sharing one uplink (and one downlink, unlimited by default):
- in front of one function (a reverse proxy): the client is given the proxy's URL instead of the function's
  (`python -m bench.real_media` writes an endpoints file of them for the `vid2mp3` command). Every URL of a function
  the proxy stands in front of is rewritten to the proxy's own in the answers' headers (a tus upload's `Location`)
  and in their JSON and text bodies (the upload's `status_url`), so the tus PATCHes and whatever else the client
  follows come through it too; the request's `Host`, `Origin` and `Referer` go the other way.
- a forward proxy (requests in absolute form, `GET http://host:port/path`), for a browser told to use it: nothing
  to rewrite, since the page keeps its own URLs. Only loopback hosts are served: this is no open proxy.

Each request goes to the function on a connection of its own and the answer says `Connection: close`: the client
opens a new connection for its next request (on the loopback, a fraction of a millisecond), and the proxy never
needs to find where one request ends and the next begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# Bytes moved per read and per token-bucket step: at 50 Mbit/s one step is 10 ms of the uplink.
STEP_BYTES = 64 * 1024
# A request's or an answer's head larger than this is refused (the functions' own limit is smaller).
MAX_HEAD_BYTES = 64 * 1024
# Answers rewritten whole are at most this large (job views, tus answers); larger ones pass as they are.
MAX_REWRITTEN_BODY_BYTES = 4 * 1024 * 1024
REWRITTEN_TYPES = ("application/json", "text/", "application/javascript", "application/problem+json")
# Headers that describe one hop's connection: the proxy sets its own.
HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"}
LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
MBIT = 1_000_000 / 8
SENT, RECEIVED = "sent", "received"


def mbit_per_s(rate: float) -> float:
    """Bytes a second of an uplink of `rate` Mbit/s."""
    return rate * MBIT


class TokenBucket:
    """Bytes a second through a link: each `delay_for(n)` takes n bytes' worth of tokens and answers how long to
    wait before sending them. Tokens build up to `burst_bytes` while the link is idle; a sender that takes more than
    there are runs into debt, which later senders wait off too, so senders sharing the bucket share the rate.
    `rate_bytes_per_s` None: no limit."""

    def __init__(self, rate_bytes_per_s: float | None, burst_bytes: int = STEP_BYTES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_bytes_per_s is not None and rate_bytes_per_s <= 0:
            raise ValueError("a rate is positive (None for no limit)")
        self.rate, self.burst, self.clock = rate_bytes_per_s, burst_bytes, clock
        self.tokens, self.updated = float(burst_bytes), clock()

    def delay_for(self, size: int) -> float:
        if self.rate is None:
            return 0.0
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= size
        return max(0.0, -self.tokens / self.rate)


def origin_of(url: str) -> str:
    """`scheme://host:port` of a URL, the port written out."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


class Rewriter:
    """Replaces each origin of `mapping` (`http://host:port`, as a URL's beginning) by the one it maps to, wherever
    it stands in a text; an origin followed by more digits (another port) is left alone."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = {origin_of(source): origin_of(target) for source, target in mapping.items()}
        alternatives = sorted(self.mapping, key=len, reverse=True)
        self.pattern = re.compile("|".join(f"{re.escape(origin)}(?![0-9])" for origin in alternatives)) \
            if alternatives else None

    def text(self, text: str) -> str:
        if self.pattern is None:
            return text
        return self.pattern.sub(lambda match: self.mapping[match.group(0)], text)

    def body(self, body: bytes) -> bytes:
        if self.pattern is None:
            return body
        try:
            return self.text(body.decode()).encode()
        except UnicodeDecodeError:
            return body

    def reversed(self) -> Rewriter:
        return Rewriter({target: source for source, target in self.mapping.items()})


NO_REWRITING = Rewriter({})


@dataclass
class Head:
    """An HTTP/1.1 request's or answer's first line and headers, in their order."""

    first_line: str
    headers: list[tuple[str, str]]

    @classmethod
    def parse(cls, raw: bytes) -> Head:
        lines = raw.decode("latin-1").split("\r\n")
        first, headers = lines[0], []
        for line in lines[1:]:
            if not line:
                continue
            name, separator, value = line.partition(":")
            if not separator or not name or name != name.strip():
                raise ValueError(f"not a header line: {line[:80]!r}")
            headers.append((name, value.strip()))
        return cls(first, headers)

    def get(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.headers.append((name, value))

    def remove(self, *names: str) -> None:
        unwanted = {name.lower() for name in names}
        self.headers = [(key, value) for key, value in self.headers if key.lower() not in unwanted]

    def encode(self) -> bytes:
        lines = [self.first_line, *(f"{key}: {value}" for key, value in self.headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def forward_target(target: str) -> tuple[str, int, str]:
    """(host, port, origin-form target) of a forward proxy's absolute-form request target; loopback hosts only."""
    parts = urllib.parse.urlsplit(target)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http:// targets are forwarded, not {target[:80]!r}")
    host = parts.hostname
    if host not in LOOPBACK_NAMES:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"only loopback hosts are forwarded, not {host!r}")
    path = parts.path or "/"
    return host, parts.port or 80, path + (f"?{parts.query}" if parts.query else "")


def request_head_for_upstream(head: Head, upstream_netloc: str, to_upstream: Rewriter) -> Head:
    """The request as the function gets it: its own Host, the client's Origin and Referer mapped back, and one
    request on the connection."""
    method, target, version = head.first_line.split(" ", 2)
    upstream = Head(f"{method} {target} {version}", [(key, value) for key, value in head.headers
                                                     if key.lower() not in HOP_HEADERS])
    for name in ("Origin", "Referer"):
        value = upstream.get(name)
        if value is not None:
            upstream.set(name, to_upstream.text(value))
    upstream.set("Host", upstream_netloc)
    upstream.set("Connection", "close")
    return upstream


def rewritable(head: Head, method: str) -> bool:
    """Whether an answer's body is read whole and its URLs rewritten: a text or JSON body of a stated length, not
    compressed, not a stream of events."""
    kind = (head.get("Content-Type") or "").lower()
    length = head.get("Content-Length")
    return (method != "HEAD" and length is not None and length.isdigit()
            and int(length) <= MAX_REWRITTEN_BODY_BYTES and head.get("Content-Encoding") is None
            and kind.startswith(REWRITTEN_TYPES) and not kind.startswith("text/event-stream"))


def answer_head_for_client(head: Head, to_client: Rewriter) -> Head:
    answer = Head(head.first_line, [(key, to_client.text(value)) for key, value in head.headers
                                    if key.lower() not in HOP_HEADERS])
    answer.set("Connection", "close")
    return answer


@dataclass
class Counts:
    """Bytes through the proxy since the last reset: sent (client → function, what an uplink carries) and received,
    by the function's origin."""

    sent: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    requests: int = 0

    @property
    def sent_bytes(self) -> int:
        return sum(self.sent.values())

    @property
    def received_bytes(self) -> int:
        return sum(self.received.values())


@dataclass(frozen=True)
class Listener:
    url: str
    upstream: str | None  # the function's origin; None: a forward proxy


class ShapingProxy:
    """The proxy, run on an event loop of its own in a thread: `with ShapingProxy(upstreams, uplink_mbit=50) as
    proxy:`, then `proxy.url_for(origin)` (in front of that function), `proxy.forward_url` (a forward proxy),
    `proxy.rewrite(text)` (URLs of the functions → the proxy's), `proxy.counts`, `proxy.reset_counts()`."""

    def __init__(self, upstreams: Iterable[str], *, uplink_mbit: float | None = None,
                 downlink_mbit: float | None = None, forward: bool = False, host: str = "127.0.0.1") -> None:
        self.upstreams = list(dict.fromkeys(origin_of(url) for url in upstreams))
        self.host, self.forward = host, forward
        self.uplink = TokenBucket(mbit_per_s(uplink_mbit) if uplink_mbit else None)
        self.downlink = TokenBucket(mbit_per_s(downlink_mbit) if downlink_mbit else None)
        self.uplink_mbit, self.downlink_mbit = uplink_mbit, downlink_mbit
        self.counts = Counts()
        self.listeners: list[Listener] = []
        self.errors: list[str] = []
        self.to_client = Rewriter({})
        self.to_upstream = Rewriter({})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.AbstractServer] = []

    # --- life ------------------------------------------------------------------------------------------------

    def __enter__(self) -> ShapingProxy:
        self.start()
        return self

    def __exit__(self, *exception: object) -> None:
        self.stop()

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except BaseException as error:
                failure.append(error)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            # Connections still open (a client that kept a stream of events) are cut, whenever they came.
            while pending := asyncio.all_tasks(loop):
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="shaping-proxy", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise RuntimeError(f"the shaping proxy did not start: {failure[0]}")

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        def close() -> None:
            for server in self._servers:
                server.close()
            loop.stop()

        loop.call_soon_threadsafe(close)
        thread.join(30)
        self._loop = self._thread = None

    async def _listen(self) -> None:
        mapping = {}
        for upstream in [*self.upstreams, *([None] if self.forward else [])]:
            server = await asyncio.start_server(functools.partial(self._serve, upstream=upstream), self.host, 0,
                                                limit=MAX_HEAD_BYTES)
            url = f"http://{self.host}:{server.sockets[0].getsockname()[1]}"
            self._servers.append(server)
            self.listeners.append(Listener(url, upstream))
            if upstream is not None:
                mapping[upstream] = url
        self.to_client = Rewriter(mapping)
        self.to_upstream = self.to_client.reversed()

    # --- what the bench asks -----------------------------------------------------------------------------------

    def url_for(self, upstream_url: str) -> str:
        """The proxy's URL standing for `upstream_url` (its path kept)."""
        return self.to_client.text(upstream_url)

    def rewrite(self, text: str) -> str:
        return self.to_client.text(text)

    @property
    def forward_url(self) -> str:
        return next(listener.url for listener in self.listeners if listener.upstream is None)

    def reset_counts(self) -> Counts:
        """The counts so far, and zero from now on."""
        counts, self.counts = self.counts, Counts()
        return counts

    # --- one connection ----------------------------------------------------------------------------------------

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                     upstream: str | None) -> None:
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            raw = await client_reader.readuntil(b"\r\n\r\n")
            head = Head.parse(raw)
            method, target, _ = head.first_line.split(" ", 2)
            # A forward proxy's client keeps the functions' own URLs: nothing to rewrite either way.
            to_client, to_upstream = (NO_REWRITING, NO_REWRITING) if upstream is None else \
                (self.to_client, self.to_upstream)
            if upstream is None:
                host, port, target = forward_target(target)
                netloc = f"{host}:{port}"
                origin = f"http://{netloc}"
                head.first_line = " ".join([method, target, head.first_line.split(" ", 2)[2]])
            else:
                parts = urllib.parse.urlsplit(upstream)
                host, port = str(parts.hostname), int(parts.port or 80)
                netloc, origin = f"{host}:{port}", upstream
            self.counts.requests += 1
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port, limit=MAX_HEAD_BYTES)
            await self._send(self.uplink, upstream_writer, len(raw), origin, SENT,
                             request_head_for_upstream(head, netloc, to_upstream).encode())
            sending = asyncio.create_task(self._pipe(client_reader, upstream_writer, self.uplink, origin,
                                                     SENT))
            try:
                await self._answer(upstream_reader, client_writer, method, origin, to_client)
            finally:
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await sending
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass  # the client or the function went away: so does this connection
        except asyncio.CancelledError:
            pass  # the proxy stops: the connection ends here, as if either side had gone (asyncio's server callback
            # takes a cancelled connection task for an error)
        except ValueError as error:
            self.errors.append(str(error))
            with contextlib.suppress(ConnectionError):
                client_writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await client_writer.drain()
        finally:
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                        await asyncio.wait_for(writer.wait_closed(), 5)

    async def _send(self, bucket: TokenBucket, writer: asyncio.StreamWriter, counted: int, origin: str,
                    direction: str, data: bytes) -> None:
        """Writes `data` once the link has room for `counted` bytes (what the other side sent: a rewritten head
        differs from it by a few bytes), and counts them."""
        delay = bucket.delay_for(counted)
        if delay:
            await asyncio.sleep(delay)
        into = self.counts.sent if direction == SENT else self.counts.received
        into[origin] = into.get(origin, 0) + counted
        writer.write(data)
        await writer.drain()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, bucket: TokenBucket,
                    origin: str, direction: str, length: int | None = None) -> None:
        """Copies `length` bytes (None: to the end) from `reader` to `writer` through `bucket`, counted as
        `direction` (SENT or RECEIVED)."""
        left = length
        while left is None or left > 0:
            chunk = await reader.read(STEP_BYTES if left is None else min(STEP_BYTES, left))
            if not chunk:
                if left:
                    raise asyncio.IncompleteReadError(b"", left)
                return
            await self._send(bucket, writer, len(chunk), origin, direction, chunk)
            if left is not None:
                left -= len(chunk)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str,
                      origin: str, to_client: Rewriter) -> None:
        while True:
            raw = await reader.readuntil(b"\r\n\r\n")
            head = Head.parse(raw)
            status = int(head.first_line.split(" ", 2)[1])
            if 100 <= status < 200 and status != 101:  # 100 Continue and the like: the answer follows
                await self._send(self.downlink, writer, len(raw), origin, RECEIVED, raw)
                continue
            break
        answer = answer_head_for_client(head, to_client)
        if rewritable(head, method):
            body = to_client.body(await reader.readexactly(int(head.get("Content-Length") or 0)))
            answer.set("Content-Length", str(len(body)))
            await self._send(self.downlink, writer, len(raw), origin, RECEIVED, answer.encode())
            await self._send(self.downlink, writer, len(body), origin, RECEIVED, body)
            return
        await self._send(self.downlink, writer, len(raw), origin, RECEIVED, answer.encode())
        if method == "HEAD" or status in (204, 304):
            return
        length = head.get("Content-Length")
        if length is not None and length.isdigit() and "chunked" not in (head.get("Transfer-Encoding") or ""):
            await self._pipe(reader, writer, self.downlink, origin, RECEIVED, int(length))
        else:  # chunked or to the end: the function closes once done, as asked
            await self._pipe(reader, writer, self.downlink, origin, RECEIVED)
