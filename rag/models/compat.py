"""A copy of a model that GPT4All's older bundled llama.cpp can load (one header value renamed)."""

from __future__ import annotations

import os
from pathlib import Path

from rag.errors import RagError
from rag.models.gguf import read_header, rewrite_string_value

# Pre-tokenizer names newer than the llama.cpp inside gpt4all 2.8, mapped to an older name that
# llama.cpp treats identically (same split regexes): 'smollm' shares its case with 'starcoder'.
_PRE_TOKENIZER_ALIASES = {"smollm": "starcoder"}
COMPAT_SUFFIX = ".gpt4all.gguf"


def gpt4all_compatible(path: str | os.PathLike, models_dir: str | os.PathLike) -> Path:
    """The file itself, or a copy in `models_dir` whose pre-tokenizer name the older llama.cpp knows."""
    header = read_header(path)
    pre = header.metadata.get("tokenizer.ggml.pre")
    if pre not in _PRE_TOKENIZER_ALIASES:
        return Path(path)
    source = Path(path)
    dest = Path(models_dir) / (source.name.removesuffix(".gguf") + COMPAT_SUFFIX)
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
