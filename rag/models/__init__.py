"""Model files, one module per role: GGUF inspection (`gguf`), the catalogue (`catalogue`),
download (`download`), models already on disk (`discovery`), resolving a configured model to a file
above those three (`resolve`) and the GPT4All compatibility copy (`compat`). The names callers use are re-exported here."""

from rag.models.catalogue import (CATALOGUE, DEFAULT_MODEL, CatalogueEntry, default_model_path, is_default_model,
                                  recommended)
from rag.models.compat import COMPAT_SUFFIX, gpt4all_compatible
from rag.models.discovery import FoundModel, discover, find_discovered, list_local_models, memory_mb
from rag.models.download import download_model
from rag.models.gguf import GGUFHeader, read_header, rewrite_string_value
from rag.models.resolve import resolve_model

__all__ = ["CATALOGUE", "COMPAT_SUFFIX", "DEFAULT_MODEL", "CatalogueEntry", "FoundModel", "GGUFHeader",
           "default_model_path", "discover", "download_model", "find_discovered", "gpt4all_compatible", "is_default_model",
           "list_local_models", "memory_mb", "read_header", "recommended", "resolve_model", "rewrite_string_value"]
