"""Which names a peer certificate carries, and which members they name
(node.tls; the peer guard's rule, found lacking by review)."""

from __future__ import annotations

import pytest

from node.tls import certificate_names, names_match


def test_a_certificate_that_names_nothing_is_still_a_certificate() -> None:
    assert certificate_names(None) is None and certificate_names({}) is None
    spiffe = {"subject": (), "subjectAltName": (("URI", "spiffe://shoal/n1"),)}
    assert certificate_names(spiffe) == frozenset({"spiffe://shoal/n1"})
    assert certificate_names({"subject": (), "serialNumber": "01"}) == frozenset()


@pytest.mark.parametrize(
    ("names", "wanted", "named"),
    [
        ((("DNS", "N1.Shoal"),), "n1.shoal", True),
        ((("DNS", "n1.shoal."),), "n1.shoal", True),
        ((("DNS", "n1.shoal"),), "N1.SHOAL.", True),
        ((("IP Address", "0:0:0:0:0:0:0:1"),), "::1", True),
        ((("IP Address", "::1"),), "[0:0:0:0:0:0:0:1]", True),
        ((("DNS", "*.shoal-headless"),), "shoal-0.shoal-headless", True),
        ((("DNS", "*.shoal-headless"),), "a.b.shoal-headless", False),
        ((("DNS", "*.shoal-headless"),), "shoal-headless", False),
        ((("DNS", "n2"),), "n1", False),
        ((("IP Address", "127.0.0.1"),), "127.0.0.2", False),
    ],
)
def test_names_match_as_hosts_are_compared(
    names: tuple[tuple[str, str], ...], wanted: str, named: bool
) -> None:
    found = certificate_names({"subject": ((("commonName", "someone"),),),
                               "subjectAltName": names})  # fmt: skip
    assert found is not None
    assert names_match(found, wanted) is named
