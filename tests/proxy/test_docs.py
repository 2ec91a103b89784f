"""docs/proxy.md's JSON schemas name exactly the fields the Structs send and accept."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec

from staywire.proxy import schema

DOC = Path(__file__).resolve().parents[2] / "docs" / "proxy.md"


def fields(struct: type[msgspec.Struct]) -> set[str]:
    return set(struct.__struct_fields__)


def test_schemas_match_the_structs() -> None:
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)]
    (connect_req, connect_ans, refresh_req, refresh_ans, channel_req, channel_ans, rpc_req,
     batch_req, batch_ans) = blocks
    assert set(connect_req["properties"]) == fields(schema.ConnectRequest)
    assert set(connect_ans["properties"]) == fields(schema.ConnectResponse)
    assert set(connect_ans["properties"]["result"]["properties"]) == fields(schema.ConnectResult)
    assert set(connect_ans["properties"]["disconnect"]["properties"]) == fields(
        schema.Disconnect)
    assert set(refresh_req["properties"]) == fields(schema.RefreshRequest)
    assert set(refresh_ans["properties"]) == fields(schema.RefreshResponse)
    assert set(refresh_ans["properties"]["result"]["properties"]) == fields(schema.RefreshResult)
    assert set(channel_req["properties"]) == fields(schema.ChannelRequest)
    assert set(channel_ans["properties"]) == fields(schema.ChannelResponse)
    assert set(channel_ans["properties"]["error"]["properties"]) == fields(schema.Failure)
    assert set(rpc_req["properties"]) == fields(schema.RpcRequest)
    assert set(batch_req["properties"]) == fields(schema.BatchRequest)
    assert set(batch_ans["properties"]) == fields(schema.BatchResponse)
    assert batch_ans["additionalProperties"] is False  # forbid_unknown_fields
