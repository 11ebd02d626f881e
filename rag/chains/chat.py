"""Chat: QA over a conversation, a follow-up first made into a standalone question."""

from __future__ import annotations

import time

from rag import limits
from rag import prompts as P
from rag.chains.base import REWRITE, Answer, Note, _messages
from rag.chains.followups import needs_subject, rewrite_problem, with_subject
from rag.chains.qa import QAChain
from rag.errors import RagError
from rag.interrupt import checkpoint


class ChatChain(QAChain):
    """QA over a conversation. A follow-up that names its own subject ("What about memory?") is searched
    as written. One that leans on the conversation ("Why?", "Which one needs it?") is rewritten by the
    model into a standalone question; a rewrite that is not a question, loses the user's key terms or
    repeats the previous question is not used, and the follow-up is given the previous question's subject
    instead. History holds the user's own questions, so a bad rewrite never reaches the next turn, and no
    answer quotes again a sentence an earlier answer quoted.

    A history turn is (question, answer) or (question, answer, standalone question)."""

    condense_max_tokens = 96

    def ask(self, question: str, history: list[tuple] | None = None) -> Answer:
        started = time.perf_counter()
        question = question.strip()
        if not question:
            raise RagError("The question is empty; type a question.")
        history = [tuple(turn) for turn in history or []]
        earlier = [turn[1] for turn in history if len(turn) > 1 and turn[1]]
        if not history or not needs_subject(question):
            return self._answer(question, question, started, avoid=earlier)
        previous = history[-1][2] if len(history[-1]) > 2 and history[-1][2] else history[-1][0]
        rewrite = self.condense(question, history)
        last_turn = f"{previous} {history[-1][1] if len(history[-1]) > 1 else ''}"
        problem = (rewrite_problem(question, rewrite, previous, last_turn) if rewrite != question
                   else "it is the question itself")
        if problem is None:
            return self._answer(question, rewrite, started, avoid=earlier)
        standalone = with_subject(question, previous)[:limits.MAX_QUESTION_CHARS]
        note = (f"The follow-up's rewrite \"{rewrite}\" was not used ({problem}); your question was searched with "
                "the previous question's subject.")
        return self._answer(question, standalone, started, notes=[Note(note, REWRITE)], avoid=earlier)

    def condense(self, question: str, history: list[tuple[str, str]]) -> str:
        """The follow-up as the model rewrites it (the question itself when there is no history)."""
        if not history:
            return question
        turns = [turn[:2] for turn in history]
        prompt = P.render(self.prompts.condense, chat_history=P.format_history(turns), question=question)
        # Oldest turns go first when the history is too long for the context.
        while turns and self.prompt_tokens(prompt) + self.condense_max_tokens > self.generator.context_size:
            turns.pop(0)
            prompt = P.render(self.prompts.condense, chat_history=P.format_history(turns), question=question)
        checkpoint()
        text = self.generator.generate(_messages(prompt), max_tokens=self.condense_max_tokens)
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return lines[0] if lines else question


