"""Chat: QA over a conversation, a follow-up first made into a standalone question."""

from __future__ import annotations

import time

from rag import limits
from rag import prompts as P
from rag.chains.base import Answer, _messages
from rag.chains.followups import leans_on_history, rewrite_problem
from rag.chains.qa import QAChain
from rag.errors import RagError
from rag.interrupt import checkpoint

class ChatChain(QAChain):
    """QA over a conversation: a follow-up is first rewritten, with the history, into a standalone
    question; that question drives retrieval and the answer. A rewrite that is not a question or loses
    the user's key terms is discarded: the user's own words are used, with the previous question added to
    the search. History holds the user's own questions, so a bad rewrite never reaches the next turn."""

    condense_max_tokens = 96

    def ask(self, question: str, history: list[tuple[str, str]] | None = None) -> Answer:
        started = time.perf_counter()
        question = question.strip()
        if not question:
            raise RagError("The question is empty; type a question.")
        history = history or []
        rewrite = self.condense(question, history)
        previous = history[-1][0] if history else None
        problem = rewrite_problem(question, rewrite, previous) if rewrite != question else None
        if problem is None:
            return self._answer(question, rewrite, started)
        if not leans_on_history(question):
            note = (f"The follow-up's rewrite \"{rewrite}\" was not used ({problem}); your question was searched "
                    "as you wrote it.")
            return self._answer(question, question, started, notes=[note])
        note = (f"The follow-up's rewrite \"{rewrite}\" was not used ({problem}); your question was searched "
                "together with the previous one.")
        query = f"{history[-1][0]} {question}"[-limits.MAX_QUESTION_CHARS:]
        return self._answer(question, question, started, query=query, notes=[note])

    def condense(self, question: str, history: list[tuple[str, str]]) -> str:
        """The follow-up as the model rewrites it (the question itself when there is no history)."""
        if not history:
            return question
        turns = list(history)
        prompt = P.render(self.prompts.condense, chat_history=P.format_history(turns), question=question)
        # Oldest turns go first when the history is too long for the context.
        while turns and self.prompt_tokens(prompt) + self.condense_max_tokens > self.generator.context_size:
            turns.pop(0)
            prompt = P.render(self.prompts.condense, chat_history=P.format_history(turns), question=question)
        checkpoint()
        text = self.generator.generate(_messages(prompt), max_tokens=self.condense_max_tokens)
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return lines[0] if lines else question


