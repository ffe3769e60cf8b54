"""Wire payloads (safetensors + JSON header) and chunk reassembly: round trips and every defect
a truncated or garbled stream can produce."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from lerobot.transport import services_pb2
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from pirl_core.errors import ExitCode, TransportError
from pirl_core.transport.payload import decode_payload, encode_payload, peek_payload
from pirl_core.transport.wire import iter_chunks, reassemble

TS = services_pb2.TransferState


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert torch.equal(a[name], b[name]), name


def mixed_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "obs.state": torch.randn(4, 7, generator=g),
        "done": torch.tensor([True, False, True]),
        "episode_id": torch.arange(5, dtype=torch.int64) * (2**40),
        "image": torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8, generator=g),
        "half": torch.randn(3, generator=g).half(),
        "bf16": torch.randn(3, generator=g).bfloat16(),
        "f64": torch.randn(2, generator=g).double(),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
    }


def test_round_trip_dtypes_and_header() -> None:
    tensors = mixed_tensors()
    header = {"version": 7, "actor_id": 1, "kind": "rollout", "nested": {"a": [1, 2.5, None]}, "s": "é"}
    out_header, out = decode_payload(encode_payload(tensors, header))
    assert out_header == header
    assert_same(tensors, out)


def test_decoded_tensors_are_writable_and_independent_of_input_bytes() -> None:
    tensors = mixed_tensors()
    data = encode_payload(tensors, {})
    for blob in (data, bytearray(data)):  # bytes are copied once; a bytearray is viewed in place
        _, out = decode_payload(blob)
        out["obs.state"].add_(1.0)
        out["done"][0] = False
        assert torch.equal(out["obs.state"], tensors["obs.state"] + 1.0)
    _, again = decode_payload(data)
    assert_same(tensors, again)  # the bytes input was not modified


def test_round_trip_empty_dict() -> None:
    header, out = decode_payload(encode_payload({}, {"kind": "interactions", "items": [{"return": 1.0}]}))
    assert out == {}
    assert header["items"] == [{"return": 1.0}]


def test_round_trip_multi_mb_tensor() -> None:
    big = {"w": torch.randn(3_000_000), "b": torch.randn(10)}  # 12 MB: several 2 MiB chunks
    data = encode_payload(big, {"version": 1})
    assert len(data) > 12_000_000
    (blob,) = list(reassemble(iter_chunks(data, services_pb2.Parameters), "test"))
    assert blob == data
    _, out = decode_payload(blob)
    assert_same(big, out)


def test_tied_noncontiguous_and_numpy_header_values() -> None:
    w = torch.randn(4, 6)
    tensors = {"embed": w, "lm_head": w, "t": w.t(), "view": w[1:3]}
    header, out = decode_payload(encode_payload(tensors, {"success": np.float32(1.0), "ids": np.arange(3)}))
    assert header == {"success": 1.0, "ids": [0, 1, 2]}
    assert torch.equal(out["embed"], w) and torch.equal(out["lm_head"], w)
    assert torch.equal(out["t"], w.t()) and torch.equal(out["view"], w[1:3])


def test_payload_is_a_plain_safetensors_file_with_shapes() -> None:
    tensors = {"a": torch.ones(2, 3), "m": torch.zeros(5, dtype=torch.bool)}
    data = encode_payload(tensors, {"version": 3})
    assert_same(tensors, st_load(data))  # any safetensors tool can open a captured payload
    info = peek_payload(data)
    assert info.header == {"version": 3}
    assert info.tensors["a"].shape == (2, 3) and info.tensors["a"].dtype == "F32"
    assert info.tensors["m"].dtype == "BOOL" and info.nbytes == len(data)


@pytest.mark.parametrize("cut", [0, 5, 8, 40, -1, -100])
def test_truncated_payload_raises(cut: int) -> None:
    data = encode_payload({"w": torch.randn(100)}, {"version": 1})
    with pytest.raises(TransportError, match="truncated") as info:
        decode_payload(data[:cut])
    assert info.value.exit_code == ExitCode.TRANSPORT


def test_trailing_bytes_raise() -> None:
    data = encode_payload({"w": torch.randn(10)}, {})
    with pytest.raises(TransportError, match="trailing"):
        decode_payload(data + b"\x00")


def test_flipped_tensor_byte_fails_checksum() -> None:
    data = bytearray(encode_payload({"w": torch.randn(1000)}, {"version": 1}))
    data[-10] ^= 0xFF
    with pytest.raises(TransportError, match="checksum"):
        decode_payload(bytes(data))


def test_garbled_header_length_and_json() -> None:
    data = bytearray(encode_payload({"w": torch.randn(10)}, {"version": 1}))
    huge = bytearray(data)
    huge[0:8] = struct.pack("<Q", 2**40)
    with pytest.raises(TransportError, match="header length"):
        decode_payload(bytes(huge))
    bad_json = bytearray(data)
    bad_json[9] = ord("}")
    with pytest.raises(TransportError, match="not valid JSON|garbled"):
        decode_payload(bytes(bad_json))
    with pytest.raises(TransportError):
        decode_payload(b"\x17" * 64)


def test_plain_safetensors_is_not_a_pirl_payload() -> None:
    with pytest.raises(TransportError, match="not a pirl payload"):
        decode_payload(st_save({"w": torch.ones(2)}))


def test_format_version_mismatch_names_the_fix() -> None:
    meta = json.dumps({"format": 99, "header": {}, "crc32": 0})
    data = st_save({}, metadata={"pirl": meta})
    with pytest.raises(TransportError, match="format: got 99, expected 1"):
        decode_payload(data)


def test_offsets_that_disagree_with_shape_are_rejected() -> None:
    data = encode_payload({"w": torch.ones(4)}, {})
    hlen = struct.unpack_from("<Q", data)[0]
    st_header = json.loads(data[8 : 8 + hlen])
    st_header["w"]["shape"] = [5]
    raw = json.dumps(st_header, separators=(",", ":")).encode()
    raw += b" " * (hlen - len(raw))
    assert len(raw) == hlen
    with pytest.raises(TransportError, match="offsets"):
        decode_payload(data[:8] + raw + data[8 + hlen :])


def test_encode_rejects_what_cannot_go_on_the_wire() -> None:
    with pytest.raises(TransportError, match="expected torch.Tensor"):
        encode_payload({"x": [1, 2]}, {})  # type: ignore[dict-item]
    with pytest.raises(TransportError, match="JSON"):
        encode_payload({}, {"obj": object()})
    with pytest.raises(TransportError, match="expected dict"):
        encode_payload({}, [1])  # type: ignore[arg-type]


def test_reassemble_single_chunk_and_several_payloads() -> None:
    a, b = encode_payload({}, {"n": 1}), encode_payload({"w": torch.randn(1_000_000)}, {"n": 2})
    stream = [*iter_chunks(a, services_pb2.Parameters), *iter_chunks(b, services_pb2.Parameters)]
    assert stream[0].transfer_state == TS.TRANSFER_END  # LeRobot sends a one-chunk payload as END only
    assert list(reassemble(stream, "t")) == [a, b]


def test_reassemble_protocol_errors() -> None:
    P = services_pb2.Parameters
    with pytest.raises(TransportError, match="without a BEGIN"):
        list(reassemble([P(transfer_state=TS.TRANSFER_MIDDLE, data=b"x")], "params"))
    with pytest.raises(TransportError, match="ended in the middle"):
        list(reassemble([P(transfer_state=TS.TRANSFER_BEGIN, data=b"xy")], "params"))
    with pytest.raises(TransportError, match="began before"):
        list(reassemble([P(transfer_state=TS.TRANSFER_BEGIN), P(transfer_state=TS.TRANSFER_BEGIN)], "params"))
