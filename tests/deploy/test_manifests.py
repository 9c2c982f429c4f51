"""The manifest helpers refuse what a manifest check must catch."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import container_port

CONTAINER = {
    "name": "gateway",
    "ports": [{"name": "http", "containerPort": 9696}, {"containerPort": 9100}],
}


@pytest.mark.parametrize(("port", "number"), [("http", 9696), (9696, 9696), (9100, 9100)])
def test_a_declared_port_is_its_number(port: int | str, number: int) -> None:
    assert container_port(CONTAINER, port) == number


@pytest.mark.parametrize("port", [8080, 0, "grpc"])
def test_a_port_the_container_does_not_declare_fails(port: int | str) -> None:
    with pytest.raises(AssertionError, match="is not a"):
        container_port(CONTAINER, port)


def test_a_container_without_ports_declares_none() -> None:
    with pytest.raises(AssertionError):
        container_port({"name": "tf-serving"}, 8500)
