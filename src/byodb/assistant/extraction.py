"""Memory extraction: durable facts about the user, found in one exchange.

Offline (the default) a small set of English rules reads the user's message ("my name is
…", "I like …", "I work at …", "I live in …", "remember that …"). When a real chat model is
configured, it is asked for the facts as JSON; if its answer cannot be used, the rules run
instead, so extraction never depends on a model behaving.

Extractors return candidates only. Storing them (with their source ids, without
duplicates) is ``byodb.services.after_exchange``'s job.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from byodb.assistant.chat import ChatModel, ChatTurn, OfflineChatModel
from byodb.assistant.embeddings import STOP_WORDS

log = logging.getLogger(__name__)

MAX_MEMORY_CHARS = 10_000
_MAX_CANDIDATES = 8


@dataclass(frozen=True)
class MemoryCandidate:
    content: str
    category: str
    importance: float


class MemoryExtractor(Protocol):
    async def extract(self, user_text: str, assistant_text: str) -> list[MemoryCandidate]:
        ...


# -- offline rules ---------------------------------------------------------------------------

# First person → third person inside a captured clause, so a memory reads as a fact about
# "the user" wherever it is shown ("I like my coffee black" → "…likes their coffee black").
_PRONOUNS = {"i": "they", "me": "them", "my": "their", "mine": "theirs", "myself": "themselves",
             "i'm": "they're", "i've": "they've", "i'll": "they'll", "i'd": "they'd",
             "am": "are"}
_PRONOUN = re.compile(r"\b(" + "|".join(re.escape(p) for p in _PRONOUNS) + r")\b",
                      re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?;\n]+")
_WORD = re.compile(r"\w+")
_QUOTES = " \t\"'\u201c\u201d\u2018\u2019"  # spaces and straight or curly quotes
# A clause ends at a comma, a conjunction, or "and" starting a new first-person statement
# ("I love hiking and I live in Oslo" holds two facts).
_CLAUSE_END = re.compile(r",|\s+(?:but|because|although|though|so)\s+"
                         r"|\s+and\s+(?=(?:i|i'm|my)\b)", re.IGNORECASE)
_NAME_WORD = r"[^\W\d_][\w'-]*"
_THIRD_PERSON = {"like": "likes", "love": "loves", "enjoy": "enjoys", "prefer": "prefers",
                 "hate": "hates", "dislike": "dislikes", "adore": "adores"}


_LEADING_SUBJECT = ((re.compile(r"^(?:i am|i'm)\b", re.IGNORECASE), "the user is"),
                    (re.compile(r"^(?:i have|i've)\b", re.IGNORECASE), "the user has"),
                    (re.compile(r"^my\b", re.IGNORECASE), "the user's"),
                    (re.compile(r"^i\b", re.IGNORECASE), "the user"))


def _third_person(clause: str) -> str:
    for pattern, replacement in _LEADING_SUBJECT:
        clause, replaced = pattern.subn(replacement, clause, count=1)
        if replaced:
            break
    return _PRONOUN.sub(lambda m: _PRONOUNS[m.group(1).lower()], clause)


def _clause(text: str) -> str | None:
    clause = _CLAUSE_END.split(text, maxsplit=1)[0].strip(_QUOTES)
    if not clause or len(clause) > 200:
        return None  # nothing said, or a ramble that is no crisp fact
    if not any(w not in STOP_WORDS for w in _WORD.findall(clause.lower())):
        return None  # "I like it" names nothing worth keeping
    return clause


@dataclass(frozen=True)
class _Rule:
    """A pattern and the sentence it becomes. ``template`` may use ``{name}`` (the ``name``
    group, capitalised), ``{verb}`` (the ``verb`` group in the third person) and
    ``{base}`` (the ``verb`` group as written), ``{clause}`` (the ``clause`` group, cut at
    the clause's end, pronouns turned)."""

    pattern: re.Pattern[str]
    template: str
    category: str
    importance: float

    def find(self, sentence: str) -> tuple[int, int, MemoryCandidate] | None:
        """The fact in ``sentence`` with the span of text it used, if the rule matches."""
        match = self.pattern.search(sentence)
        if match is None:
            return None
        groups = match.groupdict()
        clause, end = "", match.end()
        if "clause" in groups:
            found = _clause(groups["clause"])
            if found is None:
                return None
            clause, end = _third_person(found), match.start("clause") + len(found)
        name = " ".join(w[:1].upper() + w[1:] for w in (groups.get("name") or "").split())
        base = (groups.get("verb") or "").lower()
        content = self.template.format(name=name, verb=_THIRD_PERSON.get(base, base),
                                       base=base, clause=clause)
        return match.start(), end, MemoryCandidate(content[:1].upper() + content[1:],
                                                   self.category, self.importance)


def _rule(pattern: str, template: str, category: str, importance: float) -> _Rule:
    return _Rule(re.compile(pattern, re.IGNORECASE), template, category, importance)


# Order matters where two rules match at the same place: the first one wins.
_RULES: tuple[_Rule, ...] = (
    _rule(rf"\b(?:my name is|call me|i am called|i'm called)\s+"
          rf"(?P<name>{_NAME_WORD}(?:\s+(?!and\b|but\b){_NAME_WORD}){{0,2}})",
          "The user's name is {name}.", "identity", 0.9),
    _rule(r"\bi\s+(?:do not|don't|dont)\s+(?P<verb>like|enjoy)\s+(?P<clause>.+)",
          "The user does not {base} {clause}.", "preference", 0.5),
    _rule(r"\bi\s+(?:really\s+|also\s+|just\s+)?(?P<verb>like|love|enjoy|prefer|hate|"
          r"dislike|adore)\s+(?P<clause>.+)", "The user {verb} {clause}.", "preference", 0.5),
    _rule(r"\bi\s+(?:currently\s+)?work\s+(?P<clause>(?:at|for|as|in|on)\s+.+)",
          "The user works {clause}.", "work", 0.7),
    _rule(r"\bi\s+(?:currently\s+)?live\s+(?P<clause>(?:in|near|on|at)\s+.+)",
          "The user lives {clause}.", "location", 0.7),
    _rule(r"\b(?:i'm|i am)\s+from\s+(?P<clause>.+)", "The user is from {clause}.",
          "location", 0.6),
    _rule(r"\bmy\s+(?P<clause>(?:favou?rite|birthday|pronouns)\b.+)", "The user's {clause}.",
          "personal", 0.6),
    _rule(r"\b(?:please\s+)?remember\s+(?:that\s+)?(?P<clause>.+)", "{clause}.", "note", 0.8),
)


class RuleMemoryExtractor:
    """Offline extraction by the rules above, from the user's message only (the reply of
    the offline model is a placeholder and says nothing about the user)."""

    async def extract(self, user_text: str, assistant_text: str) -> list[MemoryCandidate]:
        return extract_by_rules(user_text)


def extract_by_rules(text: str) -> list[MemoryCandidate]:
    found: list[MemoryCandidate] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        if not sentence or _is_question(text, sentence):
            continue
        hits = [hit for rule in _RULES if (hit := rule.find(sentence)) is not None]
        # Several facts may share a sentence ("my name is Ann and I live in Oslo"), but a
        # fact inside another's text is the same statement read twice: the earlier match,
        # then the earlier rule, wins.
        taken_until = -1
        for start, end, candidate in sorted(hits, key=lambda h: h[0]):
            if start < taken_until:
                continue
            taken_until = end
            if candidate not in found:
                found.append(candidate)
    return found[:_MAX_CANDIDATES]


def _is_question(text: str, sentence: str) -> bool:
    """"Do you think I like jazz?" states nothing; the sentence's terminator tells."""
    end = text.find(sentence) + len(sentence)
    return text[end:end + 1] == "?"


# -- a configured chat model -----------------------------------------------------------------

_INSTRUCTIONS = (
    "You extract long-term memories about the user from one chat exchange. Return only a "
    "JSON array (no prose) of at most 5 objects with keys \"content\" (one short sentence "
    "in the third person, starting with \"The user\"), \"category\" (one of identity, "
    "preference, work, location, personal, note) and \"importance\" (0 to 1). Include only "
    "durable facts the user stated about themselves or asked you to remember; return [] "
    "when there are none."
)


class ModelMemoryExtractor:
    """Asks the chat model for the facts; falls back to the rules when its answer fails."""

    def __init__(self, model: ChatModel):
        self._model = model

    async def extract(self, user_text: str, assistant_text: str) -> list[MemoryCandidate]:
        turns = [ChatTurn("system", _INSTRUCTIONS),
                 ChatTurn("user", f"User said:\n{user_text}\n\nAssistant replied:\n"
                                  f"{assistant_text[:4_000]}")]
        try:
            answer = "".join([piece async for piece in self._model.stream(turns)])
            return parse_model_memories(answer)
        except Exception as exc:  # a model failure must not cost the rule-based memories
            log.warning("memory extraction by the model failed (%s); using rules",
                        type(exc).__name__)
            return extract_by_rules(user_text)


def parse_model_memories(answer: str) -> list[MemoryCandidate]:
    """The JSON array in a model's answer, validated; raises ``ValueError`` when unusable."""
    start, end = answer.find("["), answer.rfind("]")
    if start < 0 or end < start:
        raise ValueError("no JSON array in the answer")
    items = json.loads(answer[start:end + 1])
    if not isinstance(items, list):
        raise ValueError("not a list")
    found: list[MemoryCandidate] = []
    for item in items[:_MAX_CANDIDATES]:
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            continue
        content = " ".join(item["content"].split())[:MAX_MEMORY_CHARS]
        if not content:
            continue
        category = item.get("category")
        importance = item.get("importance")
        found.append(MemoryCandidate(
            content,
            category[:100] if isinstance(category, str) and category else "note",
            min(1.0, max(0.0, float(importance)))
            if isinstance(importance, (int, float)) and importance == importance else 0.5,
        ))
    return found


def memory_extractor_for(model: ChatModel) -> MemoryExtractor:
    """Rules for the offline model; the model itself when a real one is configured."""
    if isinstance(model, OfflineChatModel):
        return RuleMemoryExtractor()
    return ModelMemoryExtractor(model)


def candidates_of(items: Sequence[MemoryCandidate]) -> list[MemoryCandidate]:
    """Unique by normalised content, first kept (a model may repeat itself)."""
    seen: set[str] = set()
    unique: list[MemoryCandidate] = []
    for item in items:
        key = normalise_memory(item.content)
        if key and key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def normalise_memory(content: str) -> str:
    """Case, punctuation and spacing do not make a memory new."""
    return " ".join(re.sub(r"[\W_]+", " ", content.lower()).split())
