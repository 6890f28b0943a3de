"""Encode and decode snapshots for the wire and for files; refuse other schema versions."""

from __future__ import annotations

import msgspec

from tollway.snapshot import types

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(types.ProxyConfig)


class SnapshotError(ValueError):
    """A snapshot that cannot be decoded or applied; the message says why (a NACK reason)."""


def encode(config: types.ProxyConfig) -> bytes:
    return _encoder.encode(config)


def decode(data: bytes | str) -> types.ProxyConfig:
    try:
        config = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise SnapshotError(
            f"snapshot does not match schema {types.SCHEMA_VERSION}: {exc}"
        ) from exc
    except msgspec.DecodeError as exc:
        raise SnapshotError(f"snapshot is not valid JSON: {exc}") from exc
    if config.schema != types.SCHEMA_VERSION:
        raise SnapshotError(
            f"snapshot schema {config.schema} is not {types.SCHEMA_VERSION}; upgrade the proxy"
        )
    return config
