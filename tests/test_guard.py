"""The one URL guard: shapes, schemes, options, and the address decisions — decided offline
with an injected resolver (no connection is opened, no name but .invalid is looked up)."""

from __future__ import annotations

import pytest

from byodb.instances.guard import (
    ConnectionCheckError,
    check_url,
    classify_address,
    parse_database_url,
)
from tests.instances_support import connection_test


def resolver_to(*addresses: str):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize("url", [
    "", "not a url", "postgresql://", "postgresql://host/db", "postgresql://u@/db",
    "postgresql://u:p@host:notaport/db", "postgresql://u:p@host:5432/", "postgresql://u:p@h1,h2/db",
    "postgresql://u:p@host/db#frag",
])
def test_malformed_urls_are_invalid(url: str) -> None:
    with pytest.raises(ConnectionCheckError) as info:
        parse_database_url(url)
    assert info.value.code == "invalid_url"


@pytest.mark.parametrize("url", ["mysql://u:p@host/db", "https://host/db", "sqlite:///x.db",
                                 "file:///etc/passwd"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ConnectionCheckError) as info:
        parse_database_url(url)
    assert info.value.code == "invalid_url"
    assert "postgresql://" in info.value.message


@pytest.mark.parametrize("option", ["sslrootcert=/etc/passwd", "options=-c%20x=1",
                                    "host=/var/run/postgresql", "passfile=/root/.pgpass"])
def test_unknown_connection_options_are_refused(option: str) -> None:
    with pytest.raises(ConnectionCheckError) as info:
        parse_database_url(f"postgresql://u:p@db.example.com/app?{option}")
    assert info.value.code == "invalid_url"


def test_parsed_url_is_redacted() -> None:
    url = parse_database_url("postgres://ann:pa%40ss@db.example.com/app?sslmode=require")
    assert url.password.reveal() == "pa@ss"
    assert url.redacted() == "postgresql://ann:****@db.example.com:5432/app?sslmode=require"
    assert "pa@ss" not in repr(url)


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "private"), ("10.1.2.3", "private"), ("192.168.0.10", "private"),
    ("172.16.5.4", "private"), ("169.254.10.10", "private"), ("::1", "private"),
    ("fd12::1", "private"), ("100.64.0.1", "private"), ("::ffff:127.0.0.1", "private"),
    ("169.254.169.254", "forbidden"), ("fd00:ec2::254", "forbidden"), ("0.0.0.0", "forbidden"),
    ("224.0.0.1", "forbidden"), ("8.8.8.8", "public"), ("2606:4700::1111", "public"),
])
def test_address_classes(address: str, kind: str) -> None:
    assert classify_address(address) == kind


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "192.168.1.1", "169.254.1.1",
                                     "::1"])
async def test_private_addresses_are_refused_unless_allowed(address: str) -> None:
    url = "postgresql://u:p@db.example.com/app"
    with pytest.raises(ConnectionCheckError) as info:
        await check_url(url, allow_private=False, tls_required=False,
                        resolver=resolver_to(address))
    assert info.value.code == "blocked_address"
    allowed = await check_url(url, allow_private=True, tls_required=False,
                              resolver=resolver_to(address))
    assert allowed.addresses == (address,)


async def test_metadata_address_is_refused_even_when_private_hosts_are_allowed() -> None:
    with pytest.raises(ConnectionCheckError) as info:
        await check_url("postgresql://u:p@169.254.169.254/app", allow_private=True,
                        tls_required=False)
    assert info.value.code == "blocked_address"


async def test_a_name_resolving_to_any_blocked_address_is_refused() -> None:
    with pytest.raises(ConnectionCheckError) as info:
        await check_url("postgresql://u:p@db.example.com/app", allow_private=False,
                        tls_required=False, resolver=resolver_to("8.8.8.8", "10.0.0.1"))
    assert info.value.code == "blocked_address"


async def test_connection_goes_to_the_checked_address_no_rebinding() -> None:
    target = await check_url("postgresql://u:p@db.example.com/app", allow_private=False,
                             tls_required=False, resolver=resolver_to("93.184.216.34"))
    kwargs = target.connect_kwargs()
    assert kwargs["hostaddr"] == "93.184.216.34" and kwargs["host"] == "db.example.com"


async def test_every_checked_address_is_tried_in_order(user_db_url: str) -> None:
    """localhost may resolve to ::1 first while the server listens on 127.0.0.1 only."""
    url = user_db_url.replace("@127.0.0.1:", "@localhost:")
    verdict = await connection_test(url, allow_private=True,
                                     resolver=resolver_to("::1", "127.0.0.1"))
    assert verdict.ok, verdict


async def test_unknown_host_is_a_dns_failure() -> None:
    with pytest.raises(ConnectionCheckError) as info:
        await check_url("postgresql://u:p@nothing-here.invalid/app", allow_private=True,
                        tls_required=False)
    assert info.value.code == "dns_failure"


async def test_production_requires_tls() -> None:
    url = "postgresql://u:p@db.example.com/app?sslmode=disable"
    with pytest.raises(ConnectionCheckError) as info:
        await check_url(url, allow_private=False, tls_required=True,
                        resolver=resolver_to("93.184.216.34"))
    assert info.value.code == "tls_failed"
    target = await check_url("postgresql://u:p@db.example.com/app", allow_private=False,
                             tls_required=True, resolver=resolver_to("93.184.216.34"))
    assert target.connect_kwargs()["sslmode"] == "verify-full"
