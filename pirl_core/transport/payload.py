"""Wire payloads: tensors plus a small JSON header, as one self-describing safetensors blob.

Format (version 1). A payload **is a valid ``.safetensors`` file**: the standard 8-byte
little-endian header length, the safetensors JSON header (tensor names, dtypes, shapes, data
offsets) and the raw tensor bytes. pirl's own header lives in the safetensors ``__metadata__``
under the key ``"pirl"`` as a JSON string::

    {"format": 1, "header": {...caller's header...}, "crc32": <int>}

Why this layout: shapes and dtypes travel in safetensors' own header (no second copy that could
disagree), no extra framing means no extra 400 MB copy per push, any safetensors tool can open a
captured payload for debugging, and nothing is ever unpickled. ``crc32`` covers the tensor bytes
(tensors in sorted-name order) so a garbled blob is caught instead of loading silently wrong
weights; it costs about 0.1 s per 400 MB on each side.

``decode_payload`` validates the framing itself before handing bytes to safetensors, so every
failure is a :class:`~pirl_core.errors.TransportError` that says what is wrong (truncated, trailing
bytes, not a pirl payload, checksum mismatch, ...), never a bare library exception.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import save as _st_save

from pirl_core.errors import TransportError

FORMAT_VERSION = 1
METADATA_KEY = "pirl"
# A safetensors JSON header above this is certainly garbage (it would describe ~millions of tensors).
MAX_HEADER_BYTES = 100 * 1024 * 1024

# safetensors dtype names -> element size in bytes (the subset torch can produce).
_DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}


_TORCH_DTYPES: dict[str, torch.dtype] = {
    name: dtype
    for name, dtype in {
        "BOOL": torch.bool,
        "U8": torch.uint8,
        "I8": torch.int8,
        "F8_E4M3": getattr(torch, "float8_e4m3fn", None),
        "F8_E5M2": getattr(torch, "float8_e5m2", None),
        "I16": torch.int16,
        "U16": getattr(torch, "uint16", None),
        "F16": torch.float16,
        "BF16": torch.bfloat16,
        "I32": torch.int32,
        "U32": getattr(torch, "uint32", None),
        "F32": torch.float32,
        "I64": torch.int64,
        "U64": getattr(torch, "uint64", None),
        "F64": torch.float64,
        "C64": torch.complex64,
    }.items()
    if dtype is not None
}


@dataclass(frozen=True)
class TensorSpec:
    """Name-independent description of one tensor in a payload (from the safetensors header)."""

    dtype: str  # safetensors dtype name, e.g. "F32", "BOOL"
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class PayloadInfo:
    """What :func:`peek_payload` learns without materialising tensors."""

    header: dict[str, Any]
    tensors: dict[str, TensorSpec]
    nbytes: int


def _json_default(value: Any) -> Any:
    # numpy / torch scalars and small arrays show up in episode stats; turn them into JSON.
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _byte_view(t: torch.Tensor) -> memoryview:
    """Zero-copy view of a contiguous CPU tensor's bytes (works for bool/bf16/0-dim too)."""
    if t.numel() == 0:
        return memoryview(b"")
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())


def _prepare(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detach, move to CPU, make contiguous; clone tensors that share storage (tied weights).

    safetensors refuses shared storage (it would duplicate or alias on load); a state dict with
    tied embeddings is common, so untie them here instead of making every caller do it.
    """
    out: dict[str, torch.Tensor] = {}
    seen_storages: set[int] = set()
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TransportError(f"payload tensor name {name!r}: expected a str")
        if not isinstance(value, torch.Tensor):
            raise TransportError(
                f"payload tensor {name!r}: got {type(value).__name__}, expected torch.Tensor "
                "(put non-tensor values in the header)"
            )
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.contiguous()
        if t.numel() > 0:
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen_storages:
                t = t.clone()
            else:
                seen_storages.add(ptr)
        out[name] = t
    return out


def encode_payload(tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> bytes:
    """Serialise ``tensors`` and a JSON-able ``header`` into one payload (see module docstring).

    Raises TransportError when a value cannot go on the wire (non-tensor, non-JSON header).
    """
    if not isinstance(header, dict):
        raise TransportError(f"payload header: got {type(header).__name__}, expected dict")
    prepared = _prepare(tensors)
    crc = 0
    for name in sorted(prepared):
        crc = zlib.crc32(_byte_view(prepared[name]), crc)
    try:
        meta = json.dumps(
            {"format": FORMAT_VERSION, "header": header, "crc32": crc},
            default=_json_default,
            allow_nan=True,
        )
    except (TypeError, ValueError) as exc:
        raise TransportError(f"payload header is not JSON serialisable: {exc}") from exc
    return _st_save(prepared, metadata={METADATA_KEY: meta})


def _parse(data: bytes | bytearray | memoryview) -> tuple[dict[str, Any], dict[str, Any], int, int]:
    """Validate framing; return (pirl meta, safetensors tensor entries, data start, total size)."""
    size = len(data)
    if size < 8:
        raise TransportError(f"payload truncated: {size} bytes, expected at least 8 (header length prefix)")
    (hlen,) = struct.unpack_from("<Q", data, 0)
    if hlen > MAX_HEADER_BYTES:
        raise TransportError(
            f"payload garbled: header length field says {hlen} bytes (max {MAX_HEADER_BYTES}); "
            "this is not a pirl/safetensors payload"
        )
    if 8 + hlen > size:
        raise TransportError(f"payload truncated: header needs {8 + hlen} bytes, got {size}")
    try:
        st_header = json.loads(bytes(data[8 : 8 + hlen]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TransportError(f"payload garbled: safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(st_header, dict):
        raise TransportError("payload garbled: safetensors header is not a JSON object")
    metadata = st_header.pop("__metadata__", None) or {}
    raw_meta = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if raw_meta is None:
        raise TransportError(
            f"not a pirl payload: safetensors metadata has no {METADATA_KEY!r} key "
            "(was it produced by pirl_core.transport.payload.encode_payload?)"
        )
    try:
        meta = json.loads(raw_meta)
    except json.JSONDecodeError as exc:
        raise TransportError(f"payload garbled: pirl header is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("header"), dict):
        raise TransportError("payload garbled: pirl header has no 'header' object")
    if meta.get("format") != FORMAT_VERSION:
        raise TransportError(
            f"payload format: got {meta.get('format')!r}, expected {FORMAT_VERSION} "
            "(learner and actor run different pirl versions; install the same version on both)"
        )
    data_start = 8 + hlen
    end = 0
    for name, entry in st_header.items():
        try:
            dtype, shape, (start, stop) = entry["dtype"], entry["shape"], entry["data_offsets"]
            itemsize = _DTYPE_SIZES[dtype]
            expected = itemsize * math.prod(int(d) for d in shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise TransportError(f"payload garbled: bad entry for tensor {name!r}: {entry!r}") from exc
        if not (0 <= start <= stop) or stop - start != expected:
            raise TransportError(
                f"payload garbled: tensor {name!r} ({dtype}{list(shape)}) has offsets "
                f"[{start}, {stop}), expected a span of {expected} bytes"
            )
        end = max(end, stop)
    total = data_start + end
    if size < total:
        raise TransportError(f"payload truncated: got {size} bytes, expected {total}")
    if size > total:
        raise TransportError(f"payload garbled: {size - total} trailing bytes after the {total} expected")
    return meta, st_header, data_start, total


def peek_payload(data: bytes | bytearray | memoryview) -> PayloadInfo:
    """Header, tensor shapes/dtypes and size, without materialising tensors or checking the CRC.

    Cheap: lets a learner drop a stale rollout by its policy version before decoding it.
    """
    meta, entries, _, total = _parse(data)
    specs = {
        name: TensorSpec(
            e["dtype"], tuple(int(d) for d in e["shape"]), e["data_offsets"][1] - e["data_offsets"][0]
        )
        for name, e in entries.items()
    }
    return PayloadInfo(header=meta["header"], tensors=specs, nbytes=total)


def decode_payload(
    data: bytes | bytearray | memoryview,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Inverse of :func:`encode_payload`: ``(header, tensors)``; TransportError on any defect.

    Given a ``bytearray`` (what :func:`pirl_core.transport.wire.reassemble` yields), the
    tensors are zero-copy views into it (``torch.frombuffer``), which saves one full copy of a
    multi-GB push; the caller must not reuse that buffer. Other inputs are copied once.
    The layout was validated by :func:`_parse` (sizes, offsets, dtypes) before any view is made.
    """
    meta, entries, data_start, _ = _parse(data)
    buf = data if isinstance(data, bytearray) else bytearray(data)
    view = memoryview(buf)
    crc = 0
    for name in sorted(entries):
        start, stop = entries[name]["data_offsets"]
        crc = zlib.crc32(view[data_start + start : data_start + stop], crc)
    if crc != meta.get("crc32"):
        raise TransportError(
            f"payload garbled: tensor checksum {crc:#010x} does not match the sender's "
            f"{meta.get('crc32')!r} (data corrupted in transit or reassembled wrongly)"
        )
    tensors: dict[str, torch.Tensor] = {}
    for name, entry in entries.items():
        dtype = _TORCH_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise TransportError(
                f"payload tensor {name!r}: dtype {entry['dtype']} has no torch equivalent here"
            )
        shape = [int(d) for d in entry["shape"]]
        numel = math.prod(shape)
        if numel == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
            continue
        start = data_start + entry["data_offsets"][0]
        tensors[name] = torch.frombuffer(buf, dtype=dtype, count=numel, offset=start).reshape(shape)
    return meta["header"], tensors
