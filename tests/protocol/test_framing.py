"""RFC 6455 message rules (MessageAssembler) and the read fence after a close (CloseFence)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from staywire.protocol.codes import CloseCode
from staywire.protocol.framing import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_TEXT,
    CloseConnection,
    CloseFence,
    MessageAssembler,
)

HTTP = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: abc=\r\n\r\n")


def frame(opcode: int, payload: bytes = b"", *, masked: bool = False, fin: bool = True) -> bytes:
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = bytes([(0x80 if fin else 0) | opcode, mask_bit | n])
    elif n < 65536:
        head = bytes([(0x80 if fin else 0) | opcode, mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([(0x80 if fin else 0) | opcode, mask_bit | 127]) + n.to_bytes(8, "big")
    if masked:
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


# -- CloseFence ----------------------------------------------------------------------------------


def test_two_close_frames_in_one_read_are_cut_after_the_first() -> None:
    """Autobahn 7.1.2: the parser must see the first close alone."""
    first = HTTP + frame(OP_TEXT, b"hi") + frame(OP_CLOSE, b"\x03\xe8")
    fence = CloseFence()
    assert fence.admit(first + frame(OP_CLOSE, b"\x03\xe8")) == len(first)
    assert fence.closed
    assert fence.admit(frame(OP_TEXT, b"late")) == 0  # nothing after the close


def test_reads_without_a_close_pass_whole() -> None:
    fence = CloseFence()
    assert fence.admit(HTTP[:10]) == 10
    assert fence.admit(HTTP[10:] + frame(OP_TEXT, b"x" * 300)) == len(HTTP) - 10 + 304
    assert fence.admit(frame(OP_BINARY, b"y" * 70000)) == 70010
    assert not fence.closed


def test_a_close_frame_split_across_reads_is_followed_to_its_end() -> None:
    fence = CloseFence(http=False)
    close = frame(OP_CLOSE, b"\x03\xe8bye")
    assert fence.admit(close[:1]) == 1  # half a header
    assert fence.admit(close[1:4]) == 3
    assert fence.admit(close[4:] + b"\x88\x00") == len(close) - 4
    assert fence.closed


def test_an_empty_close_frame_ends_the_stream() -> None:
    fence = CloseFence(http=False)
    assert fence.admit(b"\x88\x00\x88\x00") == 2


def test_a_blank_line_split_across_reads_ends_the_http_response() -> None:
    fence = CloseFence()
    cut = len(HTTP) - 2
    assert fence.admit(HTTP[:cut]) == cut
    rest = HTTP[cut:] + frame(OP_CLOSE) + frame(OP_CLOSE)
    assert fence.admit(rest) == 2 + 2


frames = st.lists(
    st.tuples(st.sampled_from([OP_TEXT, OP_BINARY, OP_CONTINUATION, 0x9, 0xA, OP_CLOSE]),
              st.sampled_from([0, 1, 2, 125, 126, 127, 65535, 65536]),
              st.booleans()),
    min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(frames, st.lists(st.integers(min_value=0, max_value=300_000), max_size=12))
def test_the_fence_admits_exactly_up_to_the_end_of_the_first_close(spec, cuts) -> None:
    """However the stream is split into reads, the parser sees every byte before the end
    of the first close frame and none after it."""
    body = [frame(op, b"\x03\xe8" + b"z" * max(0, n - 2) if op == OP_CLOSE and n >= 2
                  else b"z" * n, masked=masked) for op, n, masked in spec]
    stream = HTTP + b"".join(body)
    expected = len(stream)
    end = len(HTTP)
    for (op, _n, _m), raw in zip(spec, body, strict=True):
        end += len(raw)
        if op == OP_CLOSE:
            expected = end
            break
    fence = CloseFence()
    edges = [0, *sorted({c for c in cuts if 0 < c < len(stream)}), len(stream)]
    reads = [memoryview(stream)[a:b] for a, b in zip(edges, edges[1:], strict=False)]
    admitted = [fence.admit(read) for read in reads]
    assert sum(admitted) == expected
    assert fence.closed == any(op == OP_CLOSE for op, _, _ in spec)
    # Every read is admitted whole until the one the close frame ends in; none after it.
    short = next((i for i, (n, r) in enumerate(zip(admitted, reads, strict=True))
                  if n < len(r)), len(reads))
    assert all(n == 0 for n in admitted[short + 1:])


# -- MessageAssembler ----------------------------------------------------------------------------


def test_fragments_are_reassembled_in_order() -> None:
    asm = MessageAssembler(100)
    assert asm.assemble(OP_TEXT, False, False, b"he") is None
    assert asm.assemble(OP_CONTINUATION, False, False, b"l") is None
    assert asm.buffered == 3
    assert asm.assemble(OP_CONTINUATION, True, False, b"lo") == (OP_TEXT, b"hello")
    assert asm.buffered == 0


@pytest.mark.parametrize(("calls", "code"), [
    ([(OP_TEXT, True, True, b"x")], CloseCode.PROTOCOL_ERROR),              # RSV without extension
    ([(OP_CONTINUATION, True, False, b"x")], CloseCode.PROTOCOL_ERROR),     # nothing to continue
    ([(OP_TEXT, False, False, b"a"), (OP_TEXT, True, False, b"b")], CloseCode.PROTOCOL_ERROR),
    ([(0x3, True, False, b"")], CloseCode.PROTOCOL_ERROR),                  # reserved opcode
    ([(OP_TEXT, True, False, b"\xff")], CloseCode.INVALID_TEXT),            # not UTF-8
    ([(OP_TEXT, False, False, b"\xce"), (OP_CONTINUATION, True, False, b"")],
     CloseCode.INVALID_TEXT),                                              # cut code point
    ([(OP_BINARY, True, False, b"x" * 11)], CloseCode.MESSAGE_TOO_BIG),
    ([(OP_BINARY, False, False, b"x" * 6), (OP_CONTINUATION, False, False, b"x" * 6)],
     CloseCode.MESSAGE_TOO_BIG),                                           # too big in pieces
])
def test_violations_name_their_close_code(calls, code) -> None:
    asm = MessageAssembler(10)
    with pytest.raises(CloseConnection) as err:
        for call in calls:
            asm.assemble(*call)
    assert err.value.code is code
