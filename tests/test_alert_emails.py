"""Alert emails no user value can shape (issue 17): the hostile user ids that forged headers
and stopped every later alert arrive, through a real SMTP server, as well-formed emails with
byodb's own headers and one body; an alert that cannot be built or that the server refuses
is recorded with its reason and never holds up the others, nor the sweep."""

from __future__ import annotations

import email
from collections.abc import AsyncIterator, Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import psycopg
import pytest

from byodb.alerts import AlertItem, AlertKind, AlertSettings, compose_alerts
from byodb.alerts.outbox import MAX_ATTEMPTS, deliver_pending, record_alerts
from byodb.errors import ConfigurationError
from byodb.maindb.embedded import PostgresCluster
from byodb.settings import Settings
from tests.conftest import Api, count_rows, running_app
from tests.smtp_support import Inbox, smtp_inbox
from tests.test_health_sweep import connect_users, sweep

ENCODED_WORDS = ("=?utf-8?q?=0D=0AX-Injected:_yes=0D=0A=0D=0Aforged_body?="
                 "=?utf-8?q?=0D=0ABcc:_victim@example.test?=")
HOSTILE_IDS = (
    ENCODED_WORDS,                                   # signs in: plain ASCII
    "ann\u2028X-Injected: yes",                      # a line separator (stored before the rule)
    "bob\r\nX-Injected: yes\r\n\r\nforged body",     # CRLF
    "cy\u202e\u200b\ufeffd",                         # format characters
    "z" * 5000,                                      # far longer than any id
)
BYODB_HEADERS = ["Content-Transfer-Encoding", "Content-Type", "Date", "From", "MIME-Version",
                 "Message-ID", "Subject", "To"]


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_inbox() as box:
        yield box


@pytest.fixture
def settings(tmp_path: Path, inbox: Inbox) -> Settings:
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_TEST_RATE_LIMIT=1000,
                    BYODB_SMTP_URL=inbox.url, BYODB_ALERT_EMAILS="ops@example.test",
                    BYODB_ALERT_GROUP_THRESHOLD=2, BYODB_HEALTH_FAILURES=1,
                    BYODB_HEALTH_TIMEOUT=1.5)


@pytest.fixture
async def quiet_api(settings: Settings, main_url: str) -> AsyncIterator[Api]:
    """The app without its job worker: no scheduled sweep delivers alongside the test (in
    a running server, deliveries happen in sweeps, one at a time under the sweep lock)."""
    async with running_app(settings, main_url, run_worker=False) as api:
        yield api


def alerts_of(api: Api) -> AlertSettings:
    return api.app.state.runtime.health.sweeper.alerts  # type: ignore[no-any-return]


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def assert_only_byodbs_headers(raw: bytes) -> EmailMessage:
    message = parsed(raw)
    assert sorted(message.keys()) == BYODB_HEADERS, message.keys()
    assert not message.is_multipart() and message.get_content_type() == "text/plain"
    assert message["From"] == "byodb@localhost" and message["To"] == "ops@example.test"
    assert str(message["Subject"]).startswith("[byodb] ")
    assert not message.defects
    # Every line of the headers is one of ours: nothing was folded into a new header.
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"X-Injected" not in head and b"Bcc" not in head and b"victim" not in head
    return message


async def test_hostile_user_ids_arrive_as_byodbs_headers_and_one_body(
        quiet_api: Api, inbox: Inbox, main_url: str) -> None:
    api = quiet_api
    items = [AlertItem(user_id, "db.example.test\u2028X-Host: forged", "unreachable")
             for user_id in HOSTILE_IDS]
    alerts = [*compose_alerts(AlertKind.down, items[:2], group_threshold=2),
              *compose_alerts(AlertKind.down, items, group_threshold=2)]  # 2 single, 1 group
    runtime = api.app.state.runtime
    async with runtime.main.begin() as conn:
        await record_alerts(conn, alerts)
    delivery = await deliver_pending(runtime.main, alerts_of(api))
    assert (delivery.sent, delivery.failed) == (3, 0)
    assert len(inbox.raw) == 3
    subjects = []
    for raw in inbox.raw:
        message = assert_only_byodbs_headers(raw)
        subjects.append(str(message["Subject"]))
        body = message.get_content().replace("\r\n", "\n")  # the wire's line ends
        # The ids are in the body, as text: the encoded words are not decoded, no line
        # of the id starts a line of its own.
        assert all(ch not in body for ch in "\r\u2028\u2029\u202e\u200b\ufeff")
        assert "\nX-Injected" not in body and "\nforged body" not in body
        assert len(body) < 20_000
    assert subjects == ["[byodb] a user database went down"] * 2 + \
        ["[byodb] 5 user databases went down"]
    group = parsed(inbox.raw[2]).get_content().replace("\r\n", "\n")
    assert f"user {ENCODED_WORDS} on host" in group
    assert "user ann\ufffdX-Injected: yes on host db.example.test\ufffdX-Host: forged" in group
    assert "user bob\ufffd\ufffdX-Injected: yes\ufffd\ufffd\ufffd\ufffdforged body" in group
    assert "z" * 200 in group and "z" * 300 not in group  # bounded
    assert count_rows(main_url, "select count(*) from email_alerts where sent_at is null") == 0


async def test_a_user_whose_id_holds_encoded_words_gets_a_plain_alert_from_a_real_sweep(
        api: Api, inbox: Inbox, own_server: PostgresCluster) -> None:
    server = own_server
    try:
        await connect_users(api, server, (ENCODED_WORDS,))
    finally:
        server.stop("immediate")
    summary = await sweep(api)
    assert (summary.checked, summary.failed, summary.alerts.sent) == (1, 1, 1)
    [raw] = inbox.raw
    message = assert_only_byodbs_headers(raw)
    assert message["Subject"] == "[byodb] a user database went down"
    assert f"user {ENCODED_WORDS} on host 127.0.0.1" in message.get_content()


async def test_a_poisoned_alert_stops_neither_the_others_nor_the_sweep(
        api: Api, inbox: Inbox, main_url: str, own_server: PostgresCluster) -> None:
    # An alert as byodb wrote them before issue 17: the user id in the subject. It cannot
    # be sent safely (Python refuses the header, or would fold a forged one).
    with psycopg.connect(main_url) as conn:
        conn.execute(
            "insert into email_alerts (id, kind, user_id, subject, body, created_at) values "
            "(gen_random_uuid(), 'database_down', %s, %s, 'old body', now() - interval '1 h')",
            ("ann\u2028X-Injected: yes",
             "[byodb] the database of user ann\u2028X-Injected: yes went down"))
    server = own_server
    try:
        await connect_users(api, server, ("hal",))
    finally:
        server.stop("immediate")
    first = await sweep(api)
    second = await sweep(api)
    # Both sweeps did their work and recorded it; hal's outage was emailed.
    assert (first.checked, first.failed, second.checked) == (1, 1, 1)
    assert count_rows(main_url, "select count(*) from health_sweeps where checked = 1 "
                      "and failed = 1 and finished_at is not null") == 2
    assert [str(parsed(raw)["Subject"]) for raw in inbox.raw] == \
        ["[byodb] a user database went down"]
    assert "user hal on host 127.0.0.1" in parsed(inbox.raw[0]).get_content()
    # The poisoned alert is failed for good, with its reason, and never tried again.
    with psycopg.connect(main_url) as conn:
        row = conn.execute("select attempts, sent_at, last_error from email_alerts "
                           "where user_id <> 'hal'").fetchone()
    assert row is not None
    assert row[0] == MAX_ATTEMPTS and row[1] is None
    assert row[2].startswith("not built: the Subject header")


async def test_an_alert_the_server_refuses_is_retried_a_bounded_number_of_times_alone(
        quiet_api: Api, inbox: Inbox, main_url: str) -> None:
    api = quiet_api
    runtime = api.app.state.runtime
    async with runtime.main.begin() as conn:
        await record_alerts(conn, [
            *compose_alerts(AlertKind.down, [AlertItem("refused-one", "h", "timeout")], 5),
            *compose_alerts(AlertKind.down, [AlertItem("fine-one", "h", "timeout")], 5)])
    inbox.refuse_holding = b"user refused-one"
    for attempt in range(1, MAX_ATTEMPTS + 2):
        delivery = await deliver_pending(runtime.main, alerts_of(api))
        if attempt == 1:
            # Refused first, the next one is sent all the same.
            assert (delivery.sent, delivery.failed) == (1, 1)
        elif attempt <= MAX_ATTEMPTS:
            assert (delivery.sent, delivery.failed) == (0, 1)
        else:
            assert (delivery.sent, delivery.failed) == (0, 0)  # given up: not tried again
    assert inbox.refused == MAX_ATTEMPTS
    assert [b"user fine-one" in raw for raw in inbox.raw] == [True]
    with psycopg.connect(main_url) as conn:
        row = conn.execute("select attempts, sent_at, last_error from email_alerts "
                           "where user_id = 'refused-one'").fetchone()
    assert row == (MAX_ATTEMPTS, None, "SMTPDataError (SMTP 554)")


def test_alert_addresses_must_be_plain(tmp_path: Path) -> None:
    for field in ({"BYODB_MAIL_FROM": "byodb@x.test\r\nBcc: victim@x.test"},
                  {"BYODB_ALERT_EMAILS": "ops@x.test, =?utf-8?q?a=0D=0A?=@x.test"},
                  {"BYODB_MAIL_FROM": "Byodb <byodb@x.test>"}):
        with pytest.raises(ConfigurationError) as refused:
            AlertSettings.from_settings(Settings(BYODB_DATA_DIR=tmp_path, **field))
        assert "plain addresses" in refused.value.message
