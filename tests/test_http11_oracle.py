"""objstore's HTTP request reader against h11, a strict reference parser, on any byte stream.

Streams mix well-formed requests, smuggling attempts (conflicting lengths, bare LF,
folded lines, control characters, Transfer-Encoding) and random bytes, and are fed in
chunks split at arbitrary points. Each parser's decisions are the requests it
accepts (method, target, body), in order, and how the stream ends for it: rejected,
closed after a request that does not keep the connection alive, or waiting for more.

Where objstore deliberately differs from h11, it is stricter, and says so:

* it refuses ``Transfer-Encoding`` (no chunked bodies), which h11 reads;
* it refuses lines ended by a bare LF, obsolete line folding, and control
  characters other than HTAB in header values, all of which h11 accepts
  (RFC 9112 allows a server to, and a proxy in front may read them otherwise);
* it refuses a repeated Content-Length, even with the same value, and a list
  (``5, 5``), which h11 merges (RFC 9110 8.6 allows either);
* it serves only the methods llhttp knows, and HTTP/1.0 and 1.1 (505 otherwise).

Both refuse a head that cannot start a request without waiting for its end, but
by different rules (h11: a first byte below ``!``; objstore: not ``A``-``Z``), so
one may still be waiting where the other has refused.

So two properties: on any stream, every request objstore accepts is one h11 accepts
at the same place, with the same method, target and body (objstore never reads a
request h11 would not, nor reads one differently: no smuggling between them); and
on streams without the features above, both decide exactly alike.
"""

from __future__ import annotations

import h11
from hypothesis import given, settings
from hypothesis import strategies as st

from objstore.http11 import BadRequest, RequestReader

Decisions = tuple[list[tuple[str, str, bytes]], str]


def objstore_decisions(chunks: list[bytes]) -> Decisions:
    reader = RequestReader(1 << 20)
    accepted: list[tuple[str, str, bytes]] = []
    for chunk in chunks:
        reader.feed(chunk)
        while True:
            try:
                request = reader.next_request()
            except BadRequest:
                return accepted, "rejected"
            if request is None:
                break
            accepted.append((request.method, request.target, request.body))
            if not request.keep_alive or request.http10:
                return accepted, "closed"
    return accepted, "waiting"


def _origin_form(target: bytes) -> str:
    text = target.decode("ascii")
    for scheme in ("http://", "https://"):
        if text.lower().startswith(scheme):
            rest = text[len(scheme) :]
            cut = min((rest.find(c) for c in "/?#" if c in rest), default=len(rest))
            path = rest[cut:]
            return path if path.startswith("/") else "/" + path
    return text


def h11_decisions(chunks: list[bytes]) -> Decisions:
    connection = h11.Connection(h11.SERVER)
    accepted: list[tuple[str, str, bytes]] = []
    request: h11.Request | None = None
    body = b""
    for chunk in chunks:
        connection.receive_data(chunk)
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError:
                return accepted, "rejected"
            if event is h11.NEED_DATA:
                break
            if event is h11.PAUSED:
                return accepted, "paused"
            if isinstance(event, h11.Request):
                request, body = event, b""
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                accepted.append((request.method.decode(), _origin_form(request.target), body))
                connection.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                connection.send(h11.EndOfMessage())
                if connection.our_state is h11.MUST_CLOSE:
                    return accepted, "closed"
                connection.start_next_cycle()
    return accepted, "waiting"


# -- streams ---------------------------------------------------------------------------

_PLAIN_VALUE = st.binary(max_size=12).map(
    lambda data: bytes(b for b in data if 0x21 <= b <= 0x7E or b >= 0x80 or b == 0x20)
)
_ODD_VALUE = st.binary(min_size=1, max_size=8)  # control characters and line breaks too


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bool]:
    """One request, perhaps malformed, and whether h11 and objstore must agree on it."""
    plain = True
    method = draw(st.sampled_from([b"GET", b"POST"] * 8 + [b"DELETE", b"get", b"X-Y"]))
    plain &= method in (b"GET", b"POST", b"DELETE")
    target = draw(
        st.sampled_from(
            [b"/get/k", b"/set"] * 4
            + [b"/get/a%20b?x=1", b"http://127.0.0.1:3000/get/k?q", b"/\x7f"]
        )
    )
    version = draw(st.sampled_from([b"HTTP/1.1"] * 12 + [b"HTTP/1.0", b"HTTP/1.2"]))
    plain &= version != b"HTTP/1.2"
    lines = [b"%s %s %s" % (method, target, version)]
    for _ in range(draw(st.sampled_from([1] * 12 + [0, 2]))):
        lines.append(b"Host: " + draw(st.sampled_from([b"127.0.0.1:3000", b"x", b""])))
    body = draw(st.binary(max_size=20))
    length = draw(
        st.sampled_from(
            ["none"] * 4 + ["right"] * 8 + ["other", "conflict", "same", "list", "odd"]
        )
    )
    if length == "none":
        body = b""
    if length == "right":
        lines.append(b"Content-Length: %d" % len(body))
    elif length == "other":
        lines.append(b"Content-Length: %d" % draw(st.integers(0, 30)))
        plain = False  # the rest of the body is read as the next request: random bytes
    elif length == "conflict":
        lines += [b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + 1)]
    elif length == "same":
        lines += [b"Content-Length: %d" % len(body)] * 2
        plain = False
    elif length == "list":
        lines.append(b"Content-Length: %d, %d" % (len(body), len(body)))
        plain = False
    elif length == "odd":
        lines.append(b"Content-Length: " + draw(st.sampled_from([b"\xb2", b"-1", b"1x", b" "])))
    if draw(st.integers(0, 9)) == 0:
        lines.append(b"Transfer-Encoding: chunked")
        plain = False
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from([b"X-A", b"Accept"] * 8 + [b"X A", b"X-A ", b"", b"\xe9"]))
        if draw(st.integers(0, 9)) == 0:
            value = draw(_ODD_VALUE)
            plain &= not any(b in value for b in range(0x01, 0x20) if b not in b"\t\n\v\f\r")
            plain &= b"\x7f" not in value and b"\n" not in value.replace(b"\r\n", b"")
            plain &= b"\r" not in value.replace(b"\r\n", b"")
        else:
            value = draw(_PLAIN_VALUE)
        lines.append(name + b": " + value)
    if draw(st.integers(0, 9)) == 0:
        lines.append(draw(st.sampled_from([b" folded", b"\tfolded"])))
        plain = False
    if draw(st.integers(0, 5)) == 0:
        lines.append(b"Connection: close")
    ending = draw(st.sampled_from([b"\r\n"] * 19 + [b"\n"]))
    plain &= ending == b"\r\n"
    return ending.join(lines) + ending + ending + body, plain


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], bytes, bool]:
    """Requests and random bytes, in chunks cut anywhere, and whether it is all plain."""
    pieces = draw(
        st.lists(
            st.one_of(
                requests(),
                requests(),
                requests(),
                st.binary(max_size=30).map(lambda d: (d, False)),
            ),
            min_size=1,
            max_size=4,
        )
    )
    data = b"".join(piece for piece, _ in pieces)
    plain = all(is_plain for _, is_plain in pieces)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    bounds = zip([0, *cuts], [*cuts, len(data)], strict=True)
    chunks = [data[start:end] for start, end in bounds if end > start]
    return chunks, data, plain


@settings(max_examples=600, deadline=None)
@given(streams())
def test_objstore_accepts_only_what_h11_accepts(stream: tuple[list[bytes], bytes, bool]) -> None:
    """Every request objstore reads, h11 reads too, at the same place and with the same body."""
    chunks, _, _ = stream
    ours, _ = objstore_decisions(chunks)
    reference, _ = h11_decisions(chunks)
    assert ours == reference[: len(ours)]


@settings(max_examples=600, deadline=None)
@given(streams())
def test_on_plain_streams_both_decide_alike(stream: tuple[list[bytes], bytes, bool]) -> None:
    """Without the features objstore refuses on purpose, it decides exactly as h11 does."""
    chunks, _, plain = stream
    if plain:
        ours, reference = objstore_decisions(chunks), h11_decisions(chunks)
        assert ours[0] == reference[0]
        # A head that cannot start a request: one may refuse it before it ends.
        assert ours[1] == reference[1] or {ours[1], reference[1]} == {"waiting", "rejected"}


@settings(max_examples=300, deadline=None)
@given(streams())
def test_where_a_stream_is_cut_changes_nothing(stream: tuple[list[bytes], bytes, bool]) -> None:
    """objstore decides the same whether a stream comes whole or in pieces."""
    chunks, data, _ = stream
    assert objstore_decisions(chunks) == objstore_decisions([data])
