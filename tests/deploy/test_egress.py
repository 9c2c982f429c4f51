"""The gateway's egress NetworkPolicy allows no more of the internet than gateway.fetch.policy.

The fetcher is the first line against SSRF; the policy is the second, enforced by the CNI even if
the fetcher had a bug. Every network the fetcher refuses must be outside every ipBlock (or inside
one of its `except`s), and public addresses must stay reachable.
"""

from __future__ import annotations

import ipaddress

from gateway.fetch import policy as fetch
from tests.deploy.manifests import of_kind, one

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# What fetch.is_public_address refuses in IPv6 besides its explicit list: everything outside
# global unicast (ULA, link-local, loopback, multicast, mapped, NAT64), and 6to4, whose embedded
# IPv4 address may be private (the fetcher checks it; the policy refuses the whole prefix).
V6_REFUSED_OUTSIDE_GLOBAL = tuple(
    ipaddress.IPv6Network(n)
    for n in ("fc00::/7", "fe80::/10", "::1/128", "ff00::/8", "::ffff:0:0/96", "64:ff9b::/96")
)
PUBLIC = ("8.8.8.8", "1.1.1.1", "151.101.1.69", "2606:4700:4700::1111", "2a00:1450:4001::200e")


def egress_rules(objects: list[dict]) -> list[dict]:
    return one(objects, "NetworkPolicy", "gateway-egress")["spec"]["egress"]


def ip_blocks(objects: list[dict]) -> list[dict]:
    return [
        peer["ipBlock"]
        for rule in egress_rules(objects)
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    ]


def allows(block: dict, net: Network) -> bool:
    """Whether any address of `net` is allowed by the ipBlock."""
    cidr = ipaddress.ip_network(block["cidr"])
    if cidr.version != net.version or not cidr.overlaps(net):
        return False
    return not any(
        net.subnet_of(ipaddress.ip_network(e))
        for e in block.get("except", [])
        if ipaddress.ip_network(e).version == net.version
    )


def allowed_address(objects: list[dict], address: str) -> bool:
    return any(allows(b, ipaddress.ip_network(address)) for b in ip_blocks(objects))


def refused_networks() -> list[Network]:
    return [
        *fetch._V4_FORBIDDEN,
        *fetch._V6_FORBIDDEN_GLOBAL,
        fetch._V6_6TO4,
        *V6_REFUSED_OUTSIDE_GLOBAL,
    ]


def test_every_network_the_fetcher_refuses_is_excepted(objects):
    assert ip_blocks(objects), "the gateway has no internet egress for URL intake"
    for net in refused_networks():
        for block in ip_blocks(objects):
            assert not allows(block, net), f"{block['cidr']} lets the gateway reach {net}"


def test_the_named_private_ranges_and_cloud_metadata_are_refused_both_ways(objects):
    for address in (
        "10.1.2.3",
        "172.20.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "127.0.0.1",
        "169.254.169.254",
        "fd00::1",
        "fe80::1",
        "::1",
    ):
        assert not fetch.is_public_address(ipaddress.ip_address(address)), address
        assert not allowed_address(objects, address), address


def test_ipv6_blocks_stay_inside_global_unicast(objects):
    for block in ip_blocks(objects):
        cidr = ipaddress.ip_network(block["cidr"])
        if cidr.version == 6:
            assert cidr.subnet_of(fetch._V6_GLOBAL_UNICAST), cidr
        for e in block.get("except", []):
            assert ipaddress.ip_network(e).subnet_of(cidr), f"{e} is not inside {cidr}"


def test_public_addresses_stay_reachable(objects):
    for address in PUBLIC:
        assert fetch.is_public_address(ipaddress.ip_address(address)), address
        assert allowed_address(objects, address), address


def test_internet_rule_has_no_port_list_because_urls_may_name_any_port(objects):
    (rule,) = [r for r in egress_rules(objects) if any("ipBlock" in p for p in r["to"])]
    assert "ports" not in rule
    assert all(set(peer) == {"ipBlock"} for peer in rule["to"])


def test_dns_and_the_model_server_are_the_only_in_cluster_peers(objects):
    tfs_labels = one(objects, "Deployment", "tf-serving")["spec"]["template"]["metadata"]["labels"]
    cluster_rules = [r for r in egress_rules(objects) if not any("ipBlock" in p for p in r["to"])]
    assert len(cluster_rules) == 2
    dns, model_server = cluster_rules
    (dns_peer,) = dns["to"]
    assert dns_peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }
    assert dns_peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert sorted((p["protocol"], p["port"]) for p in dns["ports"]) == [("TCP", 53), ("UDP", 53)]
    (tfs_peer,) = model_server["to"]
    assert set(tfs_peer) == {"podSelector"}
    selector = tfs_peer["podSelector"]["matchLabels"]
    assert all(tfs_labels.get(k) == v for k, v in selector.items())
    tfs = one(objects, "Deployment", "tf-serving")["spec"]["template"]["spec"]["containers"][0]
    grpc_port = {p["name"]: p["containerPort"] for p in tfs["ports"]}["grpc"]
    assert [p["port"] for p in model_server["ports"]] == [grpc_port]


def test_tf_serving_opens_no_connections(objects):
    policy = one(objects, "NetworkPolicy", "tf-serving-egress")
    assert policy["spec"]["policyTypes"] == ["Egress"] and "egress" not in policy["spec"]
    assert len(of_kind(objects, "NetworkPolicy")) >= 5
