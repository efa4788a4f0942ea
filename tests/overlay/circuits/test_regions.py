"""The prefix → region table: parsing, longest-prefix match, IPv4 and IPv6, hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import ConfigError
from murmur.overlay.circuits.regions import MAX_ENTRIES, RegionMap

TABLE = """\
# region table for the tests
10.0.0.0/8      eu
10.1.0.0/16     na   # more specific than the /8
10.1.2.0/24     as
0.0.0.0/0       default_
2001:db8::/32   oc
2001:db8:1::/48 sa
"""


def test_longest_prefix_wins() -> None:
    regions = RegionMap.parse(TABLE)
    assert len(regions) == 6
    assert regions.region_of("10.9.9.9") == "eu"
    assert regions.region_of("10.1.9.9") == "na"
    assert regions.region_of("10.1.2.3") == "as"
    assert regions.region_of("192.0.2.1") == "default_"


def test_ipv6_longest_prefix_and_mapped_ipv4() -> None:
    regions = RegionMap.parse(TABLE)
    assert regions.region_of("2001:db8::1") == "oc"
    assert regions.region_of("2001:db8:1::1") == "sa"
    assert regions.region_of("2001:db9::1") is None
    assert regions.region_of("::ffff:10.1.2.3") == "as"


def test_unknown_and_non_ip_hosts() -> None:
    regions = RegionMap.from_entries([("192.0.2.0/24", "eu")])
    assert regions.region_of("198.51.100.1") is None
    assert regions.region_of("example.org") is None
    assert regions.region_of("") is None
    assert regions.region_of("::1") is None
    assert RegionMap.parse("").region_of("192.0.2.1") is None


def test_answers_stay_right_when_cached() -> None:
    regions = RegionMap.from_entries([("192.0.2.0/25", "a"), ("192.0.2.128/25", "b")])
    for _ in range(3):
        assert [regions.region_of(f"192.0.2.{i}") for i in (1, 127, 128, 255)] == [
            "a",
            "a",
            "b",
            "b",
        ]


def test_single_addresses_and_whole_spaces() -> None:
    regions = RegionMap.from_entries(
        [("192.0.2.7/32", "one"), ("::/0", "v6"), ("2001:db8::5", "h")]
    )
    assert regions.region_of("192.0.2.7") == "one"
    assert regions.region_of("192.0.2.8") is None
    assert regions.region_of("2001:db8::5") == "h"
    assert regions.region_of("2001:db8::6") == "v6"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("10.0.0.0/8", "expected CIDR REGION"),
        ("10.0.0.0/8 eu extra", "expected CIDR REGION"),
        ("10.0.0.1/8 eu", "host bits set"),
        ("10.0.0.0/33 eu", "not a network"),
        ("eu 10.0.0.0/8", "is not 1-32"),
        ("10.0.0.0/8 e.u", "is not 1-32"),
        (f"10.0.0.0/8 {'x' * 33}", "is not 1-32"),
        ("fe80::%1/64 eu", "scope id"),
        ("::ffff:10.0.0.0/104 eu", "IPv4-mapped"),
        ("example.org eu", "not a network"),
    ],
)
def test_bad_lines_name_their_number(line: str, why: str) -> None:
    with pytest.raises(ConfigError, match=rf"^line 3: .*{why}"):
        RegionMap.parse(f"# header\n192.0.2.0/24 eu\n{line}\n")


def test_a_network_listed_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"line 2: 192.0.2.0/24 is listed twice"):
        RegionMap.parse("192.0.2.0/24 eu\n192.0.2.0/24 na\n")
    with pytest.raises(ConfigError, match=r"entry 1: 2001:db8::/32 is listed twice"):
        RegionMap.from_entries([("2001:db8::/32", "a"), ("2001:0db8::/32", "a")])


def test_size_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("murmur.overlay.circuits.regions.MAX_ENTRIES", 3)
    RegionMap.parse("".join(f"10.{i}.0.0/16 eu\n" for i in range(3)))
    with pytest.raises(ConfigError, match=r"line 4: more than 3 networks"):
        RegionMap.parse("".join(f"10.{i}.0.0/16 eu\n" for i in range(4)))
    assert MAX_ENTRIES == 1_000_000


_LINE = st.one_of(
    st.text(max_size=40),
    st.tuples(
        st.one_of(st.ip_addresses().map(str), st.text(max_size=12)),
        st.integers(-1, 130),
        st.sampled_from(["eu", "na", "", "a#b", "x" * 33, "ok_-1"]),
    ).map(lambda t: f"{t[0]}/{t[1]} {t[2]}"),
)


@given(st.one_of(st.text(), st.lists(_LINE, max_size=8).map("\n".join)))
@settings(max_examples=400)
def test_parse_fuzz_gives_a_table_or_a_config_error(text: str) -> None:
    try:
        regions = RegionMap.parse(text)
    except ConfigError:
        return
    assert len(regions) <= len(text.splitlines())
    for host in ("10.0.0.1", "2001:db8::1", "::ffff:10.0.0.1", "not an address"):
        region = regions.region_of(host)
        assert region is None or 1 <= len(region) <= 32
