"""The one URL guard: shapes, schemes, options, and the address decisions — decided offline
with an injected resolver (no connection is opened, no name but .invalid is looked up)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from byodb.instances.connection.addresses import classify_address
from byodb.instances.connection.guard import (
    ConnectionCheckError,
    check_url,
    parse_database_url,
)
from byodb.instances.connection.handle import UserDatabase
from byodb.settings import Settings
from byodb.web.app import create_app
from tests.conftest import Api, count_rows
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


# Refused even where private hosts are allowed: cloud metadata and platform endpoints, also
# when reached through an IPv6 form that embeds their IPv4 address.
METADATA = [
    "169.254.169.254",            # AWS, GCP, Azure, Oracle, DigitalOcean, Hetzner, OpenStack
    "fd00:ec2::254",              # AWS IMDS over IPv6
    "169.254.170.2",              # AWS ECS credentials
    "169.254.170.23", "fd00:ec2::23",  # AWS EKS Pod Identity
    "168.63.129.16",              # Azure WireServer
    "192.0.0.192",                # Oracle Cloud
    "100.100.100.200",            # Alibaba Cloud
    "fd20:ce::254",               # GCP over IPv6
    "169.254.42.42",              # Scaleway
    "169.254.0.23",               # Tencent Cloud
    "fe80::a9fe:a9fe",            # OpenStack over IPv6
    "2002:a9fe:a9fe::1",          # 6to4 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client ~5601:5601 = 169.254.169.254
    "64:ff9b::a9fe:a9fe",         # NAT64 well-known prefix
    "64:ff9b:1::a9fe:a9fe",       # NAT64 local-use, /96 position
    "64:ff9b:1:a9fe:a9:fe00::",   # NAT64 local-use, /48 position (around bits 64..71)
    "::ffff:169.254.169.254",     # IPv4-mapped
    "::a9fe:a9fe",                # IPv4-compatible
    "::ffff:0:a9fe:a9fe",         # IPv4-translated (SIIT)
]
# Refused unless private hosts are allowed.
PRIVATE = [
    "2002:7f00:1::1",             # 6to4 of 127.0.0.1
    "2002:a00:1::1",              # 6to4 of 10.0.0.1
    "2002:a9fe:101::1",           # 6to4 of 169.254.1.1 (link-local)
    "fec0::1",                    # site-local (deprecated, never global)
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client ~80ff:fffe = 127.0.0.1
    "64:ff9b::a00:1",             # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1",            # NAT64 of 127.0.0.1
    "64:ff9b:1::808:808",         # local-use NAT64: our own network's translator
    "::7f00:1",                   # IPv4-compatible 127.0.0.1
    "::ffff:127.0.0.1",           # IPv4-mapped
    "::ffff:0:a00:1",             # IPv4-translated 10.0.0.1
]
# An embedded public IPv4 address reaches that public host: allowed like the plain address.
EMBEDDED_PUBLIC = [
    "2002:808:808::1",            # 6to4 of 8.8.8.8
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, client 8.8.8.8
    "64:ff9b::808:808",           # NAT64 of 8.8.8.8
]


@pytest.mark.parametrize("address", METADATA)
async def test_metadata_and_platform_addresses_are_always_refused(address: str) -> None:
    assert classify_address(address) == "forbidden"
    for allow_private in (False, True):
        with pytest.raises(ConnectionCheckError) as info:
            await check_url("postgresql://u:p@db.example.com/app", allow_private=allow_private,
                            tls_required=False, resolver=resolver_to(address))
        assert info.value.code == "blocked_address"


@pytest.mark.parametrize("address", PRIVATE)
async def test_embedded_and_site_local_private_addresses(address: str) -> None:
    assert classify_address(address) == "private"
    url = "postgresql://u:p@db.example.com/app"
    with pytest.raises(ConnectionCheckError) as info:
        await check_url(url, allow_private=False, tls_required=False,
                        resolver=resolver_to(address))
    assert info.value.code == "blocked_address"
    allowed = await check_url(url, allow_private=True, tls_required=False,
                              resolver=resolver_to(address))
    assert allowed.addresses == (address,)


@pytest.mark.parametrize("address", EMBEDDED_PUBLIC)
async def test_embedded_public_addresses_are_public(address: str) -> None:
    assert classify_address(address) == "public"
    target = await check_url("postgresql://u:p@db.example.com/app", allow_private=False,
                             tls_required=False, resolver=resolver_to(address))
    assert target.addresses == (address,)


@pytest.fixture
def no_private_settings(tmp_path: Path) -> Settings:
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=False, BYODB_TEST_RATE_LIMIT=1000)


BLOCKED_HOSTS = {f"h{i}.example.com": address for i, address in enumerate(METADATA + PRIVATE)}


@pytest.fixture
async def guarded_api(no_private_settings: Settings, main_url: str,
                      monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    """The real app with private hosts refused and names resolved from BLOCKED_HOSTS; a
    user connection is a test failure (nothing may get past the guard)."""
    async def resolve(host: str, port: int) -> list[str]:
        return [BLOCKED_HOSTS[host]]

    async def never(self: UserDatabase, *, autocommit: bool) -> object:
        raise AssertionError(f"connected to {self.url.host} past the guard")

    monkeypatch.setattr(UserDatabase, "_open", never)
    app = create_app(no_private_settings, main_url=main_url, migrate=False, resolver=resolve)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://byodb.test",
            timeout=60) as client:
        yield Api(app, client, no_private_settings)


async def test_connection_test_and_save_refuse_every_blocked_address(
        guarded_api: Api, main_url: str) -> None:
    for host, address in BLOCKED_HOSTS.items():
        url = f"postgresql://u:p@{host}:5432/app"
        tested = await guarded_api.post("/api/byod/test", "eve", json={"url": url})
        assert tested.status_code == 200, address
        assert (tested.json()["ok"], tested.json()["code"]) == (False, "blocked_address"), \
            address
        saved = await guarded_api.put("/api/byod", "eve", json={"url": url})
        assert saved.status_code == 422, address
        assert saved.json()["error"]["code"] == "blocked_address", address
    state = (await guarded_api.get("/api/byod", "eve")).json()
    assert state["connection_status"] == "none"
    assert count_rows(main_url, "select count(*) from user_database_config "
                      "where user_id = 'eve'") == 0


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
