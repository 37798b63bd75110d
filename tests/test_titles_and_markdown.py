"""Small things a user sees (issue 19): automatic chat titles end where a phrase ends, and
the Markdown export gives an assistant's reply its own time, not its question's."""

from __future__ import annotations

import re

from byodb.services.messages import TITLE_CHARS, chat_title
from tests.conftest import Api
from tests.portability_support import export_zip

LONG_QUESTION = ("Can you help me plan a three-day trip to Lisbon in May with two small "
                 "kids who love trams? We land on Friday.")


def test_a_title_is_the_first_sentence_or_ends_between_words_with_an_ellipsis() -> None:
    assert chat_title("How do I bleed a radiator? It makes noise.") == \
        "How do I bleed a radiator?"
    assert chat_title("\n  Shopping list\nmilk, eggs") == "Shopping list"
    cut = chat_title(LONG_QUESTION)
    assert cut == "Can you help me plan a three-day trip to Lisbon in May with…"
    assert len(cut) <= TITLE_CHARS + 1 and LONG_QUESTION.startswith(cut[:-1])


async def test_the_automatic_title_and_the_markdown_times_of_an_exchange(api: Api) -> None:
    created = await api.post("/api/conversations", "tia", json={})
    assert created.status_code in (200, 201), created.text
    cid = created.json()["id"]
    sent = await api.post(f"/api/conversations/{cid}/messages", "tia",
                          json={"content": LONG_QUESTION})
    assert sent.status_code in (200, 201), sent.text
    title = (await api.get(f"/api/conversations/{cid}", "tia")).json()["title"]
    assert title == "Can you help me plan a three-day trip to Lisbon in May with…"

    archive = await export_zip(api, "tia")
    [talk] = [n for n in archive.namelist() if n.startswith("markdown/conversations/")]
    text = archive.read(talk).decode()
    [(asked, question_at), (answered, reply_at)] = re.findall(
        r"^## (You|Assistant) · (\S+)$", text, flags=re.MULTILINE)
    assert (asked, answered) == ("You", "Assistant")
    assert reply_at > question_at  # the reply's own time (ISO 8601, same zone: comparable)
