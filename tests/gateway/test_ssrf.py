"""gateway.fetch against hostile URLs: real loopback servers, a canary that must never be reached.

The canary listens on 127.0.0.1 and ::1 (same port) and answers every connection with a valid PNG,
so a fetch that wrongly went through would succeed and be counted. Tests that need a "public" host
on this machine treat exactly 127.0.0.3 as public (a narrow patch of the policy) and leave the real
policy in force for every other address, the canary's included.

The SSRF table: every spelling of a non-public host, scheme, credentials and malformed URLs. More
in test_ssrf_redirects.py (redirects, positive fetches) and test_ssrf_limits.py (size, time,
https, secrets); servers in ssrf_servers.py, fixtures in conftest.py.
"""

from __future__ import annotations

import pytest

from gateway import fetch
from tests.gateway.ssrf_servers import (
    PNG,
    SECRET,
    make_settings,
    refused,
    with_port,
)

# ----------------------------------------------------------------------------- the SSRF table

# Each spelling names the canary (127.0.0.1 / ::1 / the local host) or another non-public address.
FORBIDDEN_HOSTS = [
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "127.0.0.1.",
    "2130706433",
    "0x7f000001",
    "0x7F000001",
    "0x7f.1",
    "0x7f.0x0.0x0.0x1",
    "0177.0.0.1",
    "0177.0000.0000.0001",
    "017700000001",
    "127.000.000.001",
    "127.0.0.2",
    "127.255.255.254",
    "0.0.0.0",
    "0",
    "0x0",
    "0.0.0.0.",
    "\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11",  # full-width 127.0.0.1
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "100.127.255.254",
    "169.254.169.254",
    "169.254.0.1",
    "0xa9fea9fe",
    "2852039166",
    "192.0.0.170",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "192.88.99.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[0000:0000:0000:0000:0000:0000:0000:0001]",
    "[::0001]",
    "[::]",
    "[::0]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
    "[::FFFF:127.0.0.1]",
    "[::ffff:0.0.0.0]",
    "[::ffff:169.254.169.254]",
    "[::ffff:10.0.0.1]",
    "[::ffff:192.168.0.1]",
    "[::127.0.0.1]",
    "[::7f00:1]",
    "[::10.0.0.1]",
    "[64:ff9b::127.0.0.1]",
    "[64:ff9b::7f00:1]",
    "[64:ff9b::a9fe:a9fe]",
    "[64:ff9b:1::1]",
    "[2002:7f00:1::]",
    "[2002:7f00:0001::1]",
    "[2002:a9fe:a9fe::]",
    "[2002:0a00:0001::1]",
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",  # Teredo, client 127.0.0.1 (xor-ed)
    "[2001::1]",
    "[2001:db8::1]",
    "[fe80::1]",
    "[febf::1]",
    "[fec0::1]",
    "[fc00::1]",
    "[fd00:ec2::254]",  # AWS IMDS over IPv6
    "[ff02::1]",
    "[ff05::2]",
    "[100::1]",
    "[::ffff:0:127.0.0.1]",
    "localhost",
    "LOCALHOST",
    "localhost.",
    "LocalHost.",
    "foo.localhost",
    "a.b.localhost.",
    "ip6-localhost",
    "ip6-loopback",
    "metadata",
    "metadata.google.internal",
    "metadata.google.internal.",
    "kubernetes",
    "kubernetes.default.svc.cluster.local",
    "printer.local",
    "router.home.arpa",
    "host.localdomain",
]

# Accepted spellings that are not http(s) URLs to a checkable host: refused before any lookup.
FORBIDDEN_URLS = [
    "file:///etc/passwd",
    "file://localhost/etc/passwd",
    "FILE:///etc/passwd",
    "gopher://127.0.0.1:{port}/_GET%20/",
    "ftp://127.0.0.1:{port}/",
    "dict://127.0.0.1:{port}/",
    "ldap://127.0.0.1:{port}/",
    "sftp://127.0.0.1:{port}/",
    "tftp://127.0.0.1:{port}/x",
    "jar:http://127.0.0.1:{port}/!/",
    "netdoc:///etc/passwd",
    "javascript:alert(1)",
    "data:image/png;base64,iVBORw0KGgo=",
    "ws://127.0.0.1:{port}/",
    "wss://127.0.0.1:{port}/",
    "http://user:pass@127.0.0.1:{port}/",
    "http://user@example.com/",
    "http://:@example.com/",
    "http://example.com@127.0.0.1:{port}/",
    "http://127.0.0.1:{port}@example.com/",
    "https://user:pass@example.com/a.png",
    "http://a%40b@example.com/",
    "http://127.0.0.1:{port}#@example.com/",
]

MALFORMED_URLS = [
    "",
    " ",
    "127.0.0.1",
    "127.0.0.1:{port}",
    "//127.0.0.1:{port}/",
    "/img.png",
    "img.png",
    "http:/127.0.0.1:{port}/",
    "http:127.0.0.1:{port}/",
    "http:///127.0.0.1:{port}/",
    "http://",
    "http://:{port}/",
    "http://127.0.0.1:0/",
    "http://127.0.0.1:65536/",
    "http://127.0.0.1:-1/",
    "http://127.0.0.1:+80/",
    "http://127.0.0.1:80a/",
    "http://127.0.0.1:/",
    "http://127.0.0.1:0080080/",
    "http://127.0.0.1: 80/",
    "http://127.0.0.1:{port}:{port}/",
    "http://[::1/",
    "http://[::1]x/",
    "http://[::1]:/",
    "http://::1/",
    "http://[127.0.0.1]/",
    "http://[fe80::1%25lo]:{port}/",
    "http://[fe80::1%lo]:{port}/",
    "http://[v1.fe80::1]/",
    "http://%31%32%37.0.0.1:{port}/",
    "http://127.0.0.1\t:{port}/",
    "http://127.0.0.1\n.example.com/",
    "http://127.0.0.1\\@x.com/",
    "http://127.0.0.1:{port}\\x",
    "http:\\\\127.0.0.1\\",
    "http://127.0.0.1 /",
    "http://256.0.0.1/",
    "http://1.2.3.4.5/",
    "http://0x1g.0.0.1/",
    "http://08.0.0.1/",
    "http://4294967296/",
    "http://1.16777216/",
    "http://1.1.65536/",
    "http://127..1/",
    "http://exa mple.com/",
    "http://-bad-.example.com/",
    "http://a..b.com/",
    "http://" + "a" * 64 + ".com/",
    "http://x.com/" + "a" * 5000,
    "http://\x00.com/",
    "http://example.com\x7f/",
]


@pytest.mark.parametrize("host", FORBIDDEN_HOSTS)
def test_non_public_host_is_refused(host: str, canary) -> None:
    port, hits = canary
    error = refused(f"http://{host}:{port}/img.png?token={SECRET}")
    assert (error.status, error.code) == (400, "url_forbidden"), error.message
    assert SECRET not in error.message
    assert hits == []


@pytest.mark.parametrize("template", FORBIDDEN_URLS)
def test_scheme_and_credentials_are_refused(template: str, canary) -> None:
    port, hits = canary
    error = refused(with_port(template, port))
    assert error.status == 400 and error.code in ("url_forbidden", "url_invalid"), error.message
    assert hits == []


@pytest.mark.parametrize("template", MALFORMED_URLS)
def test_malformed_url_is_refused(template: str, canary) -> None:
    port, hits = canary
    error = refused(with_port(template, port))
    assert error.status == 400 and error.code in ("url_invalid", "url_forbidden"), error.message
    assert hits == []


def test_private_deployment_still_refuses_schemes_and_credentials(canary) -> None:
    port, hits = canary
    allow = make_settings(url_allow_private=True)
    for template in (
        "file:///etc/passwd",
        "gopher://127.0.0.1:{port}/",
        "http://u:p@127.0.0.1:{port}/",
        "http://[::1/",
        "http://0.0.0.0:{port}/",
        "http://[::]:{port}/",
        "http://224.0.0.1:{port}/",
    ):
        assert refused(with_port(template, port), allow).status == 400
    assert hits == []


@pytest.mark.parametrize(
    "answers",
    [
        ["127.0.0.1"],
        ["::1"],
        ["10.1.2.3"],
        ["169.254.169.254"],
        ["::ffff:127.0.0.1"],
        ["fe80::1%lo"],
        ["93.184.216.34", "127.0.0.1"],
        ["2606:2800:220:1::1", "::1"],
        ["0.0.0.0"],
        ["100.64.1.1"],
        ["not-an-address"],
    ],
)
def test_name_resolving_to_any_non_public_address_is_refused(answers, fake_dns, canary) -> None:
    port, hits = canary
    fake_dns["images.example.com"] = answers
    error = refused(f"http://images.example.com:{port}/a.png")
    assert (error.status, error.code) == (400, "url_forbidden")
    assert "127.0.0.1" not in error.message and "169.254" not in error.message
    assert hits == []


def test_canary_counts_a_real_fetch(canary) -> None:
    """Control: the canary is reachable and counts, so its zero counts above mean something."""
    port, hits = canary
    before = len(hits)
    body = fetch.fetch_image(f"http://127.0.0.1:{port}/x", make_settings(url_allow_private=True))
    assert body == PNG and len(hits) == before + 1
    hits.clear()


def test_forbidden_table_counts() -> None:
    urls = [f"http://{h}:1/" for h in FORBIDDEN_HOSTS] + FORBIDDEN_URLS + MALFORMED_URLS
    print(
        f"SSRF table: {len(urls)} URL forms refused ({len(FORBIDDEN_HOSTS)} hosts, "
        f"{len(FORBIDDEN_URLS)} schemes/credentials, {len(MALFORMED_URLS)} malformed)"
    )
    assert len(set(urls)) == len(urls)
