"""Local retrieval-augmented generation: load, chunk, embed, index, retrieve, generate."""

from rag.errors import RagError

__all__ = ["RagError"]
__version__ = "0.1.0"
