"""The binary frame codec of protocol v2 against the shared vectors (tests/vectors/binary.json).

js/test/binary.test.mjs runs the same vectors against the browser client's codec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from staywire.protocol.binary import (
    MAX_HEADER,
    BinaryPub,
    BinaryRpc,
    decode_frame,
    encode_frame,
    msg_frame,
    result_frame,
)
from staywire.protocol.envelope import InvalidMessage

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "binary.json").read_text())


def _header_dict(header: BinaryPub | BinaryRpc) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(msgspec.json.encode(header))
    out = {k: v for k, v in out.items() if v is not None}
    if isinstance(header, BinaryPub) and header.chunk is not None:
        chunk = header.chunk
        out["chunk"] = {k: v for k, v in json.loads(msgspec.json.encode(chunk)).items()
                        if v is not None and k != "meta"}
        if chunk.meta:
            out["chunk"]["meta"] = json.loads(bytes(chunk.meta))
    return out


@pytest.mark.parametrize("case", VECTORS["frames"], ids=lambda c: c["name"])
def test_frames_encode_byte_for_byte(case: dict[str, Any]) -> None:
    header = json.dumps(case["header"], separators=(",", ":")).encode()
    assert encode_frame(header, bytes.fromhex(case["payload"])).hex() == case["frame"]


@pytest.mark.parametrize("case", [c for c in VECTORS["frames"] if c["header"]["type"] in ("pub", "rpc")],
                         ids=lambda c: c["name"])
def test_client_frames_decode_to_their_header_and_payload(case: dict[str, Any]) -> None:
    header, payload = decode_frame(bytes.fromhex(case["frame"]))
    assert _header_dict(header) == case["header"]
    assert bytes(payload).hex() == case["payload"]


def test_server_frames_are_spliced_as_the_vectors_say() -> None:
    by_name = {c["name"]: c for c in VECTORS["frames"]}
    msg = by_name["msg from the server"]
    assert msg_frame("room", "e1", 12, bytes.fromhex(msg["payload"])).hex() == msg["frame"]
    chunk = by_name["msg of a chunk"]
    assert msg_frame("files", "e1", 13, b"abc",
                     b'{"transfer":"t-1","seq":0,"at":0}').hex() == chunk["frame"]
    assert result_frame(9, b"\x89PNG").hex() == by_name["binary result"]["frame"]


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["name"])
def test_invalid_frames_get_their_error_code(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_frame(bytes.fromhex(case["frame"]))
    assert info.value.code == case["code"]


def test_the_id_of_a_bad_chunk_is_kept_for_the_error_reply() -> None:
    bad = next(c for c in VECTORS["invalid"] if c["name"] == "chunk last without sha256")
    with pytest.raises(InvalidMessage) as info:
        decode_frame(bytes.fromhex(bad["frame"]))
    assert info.value.request_id == 4


def test_encode_refuses_a_header_the_peer_could_not_read() -> None:
    with pytest.raises(ValueError):
        encode_frame(b"", b"x")
    with pytest.raises(ValueError):
        encode_frame(b"{" + b" " * MAX_HEADER + b"}", b"x")


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_fail_with_invalid_message(frame: bytes) -> None:
    try:
        decode_frame(frame)
    except InvalidMessage:
        pass


@given(st.binary(max_size=40), st.binary(max_size=32))
def test_any_header_bytes_after_a_valid_prefix_fail_cleanly(header: bytes, payload: bytes) -> None:
    if not header:
        return
    try:
        decode_frame(bytes((1, len(header) >> 8, len(header) & 0xFF)) + header + payload)
    except InvalidMessage:
        pass
