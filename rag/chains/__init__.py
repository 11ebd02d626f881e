"""QA, chat and summarise chains: retrieve, pack what fits into the prompt, stream the reply.

One module a role: `base` (results, packing, streaming), `qa`, `chat`, `followups`, `summary`, `outline`.
"""

from rag.chains.base import Answer, ChainResult
from rag.chains.chat import ChatChain
from rag.chains.followups import leans_on_history, rewrite_problem
from rag.chains.outline import headings
from rag.chains.qa import KEY_RELEVANCE, RELEVANCE, QAChain
from rag.chains.summary import SummarizeChain

__all__ = ["Answer", "ChainResult", "ChatChain", "QAChain", "SummarizeChain", "KEY_RELEVANCE", "RELEVANCE",
           "headings", "leans_on_history", "rewrite_problem"]
