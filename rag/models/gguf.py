"""GGUF inspection: parse a model file's header, check the file is whole, rewrite one value.

Headers are parsed here so a missing, foreign, damaged or truncated file fails with one sentence
before any C code sees it. A parsed header is cached per file (path, size and modification time),
since reading past a large vocabulary in Python takes a noticeable fraction of a second.
"""

from __future__ import annotations

import os
import re
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from rag.errors import RagError

MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Arrays longer than this (vocabularies) are skipped rather than kept in memory.
_KEEP_ARRAY_MAX = 64


@dataclass
class GGUFHeader:
    """What a GGUF file declares before its tensor data."""

    path: Path
    version: int
    metadata: dict = field(default_factory=dict)
    # (key, offset of the key's length prefix, offset just past the value) for every key-value pair
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    special_tokens: dict[str, str] = field(default_factory=dict)
    tensor_count: int = 0
    parameters: int = 0  # weights in all tensors: what makes a model small or capable, whatever its quantisation
    kv_end: int = 0
    table_end: int = 0
    data_start: int = 0
    data_end: int = 0

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template") or None

    @property
    def adds_bos(self) -> bool:
        """Whether tokenizing a prompt starts it with BOS (llama.cpp's rule for a missing key)."""
        default = self.metadata.get("tokenizer.ggml.model") == "llama"
        return bool(self.metadata.get("tokenizer.ggml.add_bos_token", default))

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if value is not None else None

    @property
    def quantisation(self) -> str:
        """The file's quantisation (Q4_K_M, Q8_0, F16, ...) from its file type, else from its name."""
        file_type = self.metadata.get("general.file_type")
        if file_type in _FILE_TYPES:
            return _FILE_TYPES[file_type]
        match = _QUANT_IN_NAME.search(self.path.name)
        return match.group(1).upper() if match else "unknown"

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """Bytes of an f16 KV cache for `n_ctx` tokens (0 when the header lacks the shapes)."""
        arch, meta = self.architecture, self.metadata
        layers, width = meta.get(f"{arch}.block_count"), meta.get(f"{arch}.embedding_length")
        heads = meta.get(f"{arch}.attention.head_count")
        kv_heads = meta.get(f"{arch}.attention.head_count_kv", heads)
        if not all(isinstance(v, int) and v > 0 for v in (layers, width, heads, kv_heads)):
            return 0
        return 2 * 2 * layers * n_ctx * (width // heads) * kv_heads  # K and V, two bytes each

    def ram_bytes(self, n_ctx: int | None = None) -> int:
        """Memory to run the model: its tensors, a KV cache for `n_ctx` (default: its own context,
        capped at 8192), and a fixed allowance for compute buffers."""
        n_ctx = n_ctx or min(self.context_length or 2048, 8192)
        return (self.data_end - self.data_start) + self.kv_cache_bytes(n_ctx) + (64 << 20)


# llama.cpp's file types (general.file_type)
_FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
}
_QUANT_IN_NAME = re.compile(r"(?:^|[-_.])((?:I?Q\d_[A-Z0-9_]*?|BF16|F16|F32))(?:\.gguf$|[-.])", re.IGNORECASE)


class _Reader:
    def __init__(self, f: BinaryIO, size: int):
        self.f, self.size = f, size

    def take(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise EOFError
        return data

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > self.size:
            raise ValueError(f"string length {n} exceeds the file size")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, kind: int, keep_long: bool = False):
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, n = self.unpack("<I"), self.unpack("<Q")
            if n > self.size:
                raise ValueError(f"array length {n} exceeds the file size")
            if item_kind in _SCALARS and n > _KEEP_ARRAY_MAX:
                self.take(n * struct.calcsize(_SCALARS[item_kind]))
                return _Skipped(n)
            items = [self.value(item_kind) for _ in range(n)]
            return items if n <= _KEEP_ARRAY_MAX or keep_long else _Skipped(n)
        raise ValueError(f"unknown value type {kind}")


@dataclass(frozen=True)
class _Skipped:
    """A long array (a vocabulary) that was read past, not kept."""

    length: int


_CACHE: OrderedDict[tuple, GGUFHeader] = OrderedDict()
_CACHE_MAX = 64
_CACHE_LOCK = threading.Lock()


def read_header(path: str | os.PathLike) -> GGUFHeader:
    """Parse a GGUF header and check the file holds all its tensor data; RagError otherwise.

    The result is cached until the file's size or modification time changes; treat it as read-only."""
    path = Path(path)
    if not path.is_file():
        raise RagError(f"Model file {path} does not exist; give the path to a .gguf file.")
    stat = path.stat()
    key = (str(path.absolute()), stat.st_size, stat.st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    header = _read_header(path, stat.st_size)
    with _CACHE_LOCK:
        _CACHE[key] = header
        while len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)
    return header


def _read_header(path: Path, size: int) -> GGUFHeader:
    with path.open("rb") as f:
        if f.read(4) != MAGIC:
            raise RagError(f"{path.name} is not a GGUF model file (it does not start with 'GGUF'); "
                           "convert it to GGUF or pick another file.")
        try:
            header = _parse(_Reader(f, size), path)
        except (EOFError, ValueError, struct.error) as exc:
            detail = "it ends inside its header" if isinstance(exc, EOFError) else str(exc)
            raise RagError(f"{path.name} is a damaged GGUF file ({detail}); download it again.") from None
    if header.data_end > size:
        raise RagError(f"{path.name} is truncated ({size} of {header.data_end} bytes); download it again.")
    return header


def _parse(r: _Reader, path: Path) -> GGUFHeader:
    version = r.unpack("<I")
    if version not in (2, 3):
        raise ValueError(f"unsupported GGUF version {version}")
    tensor_count, kv_count = r.unpack("<Q"), r.unpack("<Q")
    if tensor_count > r.size or kv_count > r.size:
        raise ValueError("implausible tensor or key counts")
    header = GGUFHeader(path=path, version=version, tensor_count=tensor_count)
    for _ in range(kv_count):
        start = r.f.tell()
        key = r.string()
        header.metadata[key] = r.value(r.unpack("<I"), keep_long=key == "tokenizer.ggml.tokens")
        header.spans[key] = (start, r.f.tell())
    header.kv_end = r.f.tell()
    _keep_special_tokens(header)
    header.data_end = _read_tensor_infos(r, header)
    return header


def _keep_special_tokens(header: GGUFHeader) -> None:
    """Keep the text of BOS and EOS (chat templates use them) and drop the rest of the vocabulary."""
    tokens = header.metadata.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list):
        return
    for name in ("bos", "eos"):
        token_id = header.metadata.get(f"tokenizer.ggml.{name}_token_id")
        if isinstance(token_id, int) and 0 <= token_id < len(tokens):
            header.special_tokens[f"{name}_token"] = tokens[token_id]
    header.metadata["tokenizer.ggml.tokens"] = _Skipped(len(tokens))


def _read_tensor_infos(r: _Reader, header: GGUFHeader) -> int:
    """Read the tensor table; set data_start and return the offset where the data must end."""
    extent = 0
    for _ in range(header.tensor_count):
        r.string()
        dims = [r.unpack("<Q") for _ in range(r.unpack("<I"))]
        kind, offset = r.unpack("<I"), r.unpack("<Q")
        count = 1
        for d in dims:
            count *= d
        header.parameters += count
        per_block, block_bytes = _block_size(kind, header.path)
        extent = max(extent, offset + count // per_block * block_bytes)
    header.table_end = r.f.tell()
    header.data_start = _align(header.table_end, int(header.metadata.get("general.alignment", 32)))
    return header.data_start + extent


def _block_size(kind: int, path: Path) -> tuple[int, int]:
    """(elements, bytes) per block of ggml tensor type `kind`, from the `gguf` package kept with llama.cpp; a
    type it does not know is refused, since its size (and so the file's end and its memory) is unknown."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        return GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
    except (ValueError, KeyError):
        raise RagError(f"{path.name} holds tensors of ggml type {kind}, which this version does not know; update "
                       "local-rag (and llama-cpp-python), or choose another quantisation of the model.") from None


def _align(offset: int, alignment: int) -> int:
    return offset + (-offset % alignment)


def _encode_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def rewrite_string_value(header: GGUFHeader, key: str, value: str, dest: Path) -> None:
    """Copy the model to `dest` with one string metadata value replaced, keeping the tensor data intact.

    Tensor offsets are relative to the start of the data section, so only the header is rebuilt
    and the data is re-aligned after it. The copy is written to a temporary file and renamed.
    """
    start, end = header.spans[key]
    record = _encode_string(key) + struct.pack("<I", _STRING) + _encode_string(value)
    alignment = int(header.metadata.get("general.alignment", 32))
    tmp = dest.with_name(dest.name + ".part")
    with header.path.open("rb") as src, tmp.open("wb") as out:
        out.write(src.read(start))
        out.write(record)
        src.seek(end)
        out.write(src.read(header.table_end - end))
        out.write(b"\0" * (-out.tell() % alignment))
        src.seek(header.data_start)
        while chunk := src.read(1 << 24):
            out.write(chunk)
    os.replace(tmp, dest)

