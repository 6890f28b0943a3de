"""The capture rules, table-driven against istio-iptables' semantics (its goldens in
tools/istio-iptables/pkg/capture/testdata), one row per setting or annotation."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tollway.capture import rules
from tollway.capture.rules import Capture, CaptureError, from_annotations

# The default pod: everything captured, the sidecar's admin port reachable directly.
DEFAULT = [
    "-N ISTIO_INBOUND",
    "-N ISTIO_REDIRECT",
    "-N ISTIO_IN_REDIRECT",
    "-N ISTIO_OUTPUT",
    "-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN",
    "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
    "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
    "-A PREROUTING -p tcp -j ISTIO_INBOUND",
    "-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN",
    "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
    "-A OUTPUT -j ISTIO_OUTPUT",
    "-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN",
    "-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337"
    " -j ISTIO_IN_REDIRECT",
    "-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
    "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
    "-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337"
    " -j ISTIO_IN_REDIRECT",
    "-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
    "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
    "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
    "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
]


def test_default_pod_matches_istio_init() -> None:
    assert rules.rules(from_annotations({})) == DEFAULT
    text = rules.restore_text(from_annotations({}))
    assert text.startswith("* nat\n") and text.endswith("\nCOMMIT\n")


def _diff(annotations: dict[str, str]) -> tuple[list[str], list[str]]:
    """(lines added, lines removed) against the default pod."""
    got = rules.rules(from_annotations(annotations))
    return [r for r in got if r not in DEFAULT], [r for r in DEFAULT if r not in got]


A = rules.ANNOTATION_PREFIX

# annotation -> (rules added, rules removed)
TABLE: list[tuple[dict[str, str], list[str], list[str]]] = [
    (  # excluded CIDRs return right after localhost, before the catch-all redirect
        {A + "excludeOutboundIPRanges": "10.96.0.0/12, 169.254.169.254/32"},
        ["-A ISTIO_OUTPUT -d 10.96.0.0/12 -j RETURN",
         "-A ISTIO_OUTPUT -d 169.254.169.254/32 -j RETURN"],
        [],
    ),
    (  # only the listed CIDRs go to the proxy; the rest returns
        {A + "includeOutboundIPRanges": "10.96.0.0/12,10.244.0.0/16"},
        ["-A ISTIO_OUTPUT -d 10.96.0.0/12 -j ISTIO_REDIRECT",
         "-A ISTIO_OUTPUT -d 10.244.0.0/16 -j ISTIO_REDIRECT",
         "-A ISTIO_OUTPUT -j RETURN"],
        ["-A ISTIO_OUTPUT -j ISTIO_REDIRECT"],
    ),
    (  # empty include: nothing outbound captured
        {A + "includeOutboundIPRanges": ""},
        [],
        ["-A ISTIO_OUTPUT -j ISTIO_REDIRECT"],
    ),
    (  # a loopback range included: the app's loopback traffic is no longer let through
        {A + "includeOutboundIPRanges": "127.1.2.3/32"},
        ["-A ISTIO_OUTPUT -d 127.1.2.3/32 -j ISTIO_REDIRECT", "-A ISTIO_OUTPUT -j RETURN"],
        ["-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
         "-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
         "-A ISTIO_OUTPUT -j ISTIO_REDIRECT"],
    ),
    (  # excluded inbound ports join the sidecar's own (one multiport rule)
        {A + "excludeInboundPorts": "22,8081"},
        ["-A ISTIO_INBOUND -p tcp -m multiport --dports 15090,22,8081 -j RETURN"],
        ["-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN"],
    ),
    (  # listed inbound ports: one redirect each, no exclusions apply
        {A + "includeInboundPorts": "8080,9090"},
        ["-A ISTIO_INBOUND -p tcp --dport 8080 -j ISTIO_IN_REDIRECT",
         "-A ISTIO_INBOUND -p tcp --dport 9090 -j ISTIO_IN_REDIRECT"],
        ["-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN",
         "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT"],
    ),
    (  # empty include: no inbound capture at all (not even the PREROUTING jump)
        {A + "includeInboundPorts": ""},
        [],
        ["-A PREROUTING -p tcp -j ISTIO_INBOUND",
         "-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN",
         "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT"],
    ),
    (  # excluded outbound ports return first, for tcp and udp
        {A + "excludeOutboundPorts": "22,443"},
        ["-A ISTIO_OUTPUT -p tcp -m multiport --dports 22,443 -j RETURN",
         "-A ISTIO_OUTPUT -p udp -m multiport --dports 22,443 -j RETURN"],
        [],
    ),
    (
        {A + "excludeOutboundPorts": "22"},
        ["-A ISTIO_OUTPUT -p tcp --dport 22 -j RETURN",
         "-A ISTIO_OUTPUT -p udp --dport 22 -j RETURN"],
        [],
    ),
    (  # included outbound ports are captured whatever the destination
        {A + "includeOutboundPorts": "3306", A + "includeOutboundIPRanges": ""},
        ["-A ISTIO_OUTPUT -p tcp --dport 3306 -j ISTIO_REDIRECT"],
        ["-A ISTIO_OUTPUT -j ISTIO_REDIRECT"],
    ),
]


@pytest.mark.parametrize(("annotations", "added", "removed"), TABLE,
                         ids=[next(iter(row[0])).removeprefix(A) + str(i)
                              for i, row in enumerate(TABLE)])
def test_each_annotation(annotations: dict[str, str], added: list[str],
                         removed: list[str]) -> None:
    assert _diff(annotations) == (added, removed)


def test_order_exclusions_before_the_owner_rules_and_redirects_last() -> None:
    got = rules.rules(from_annotations({
        A + "excludeOutboundPorts": "22", A + "excludeOutboundIPRanges": "10.0.0.0/8",
        A + "includeOutboundPorts": "3306"}))
    idx = got.index
    assert idx("-A ISTIO_OUTPUT -p tcp --dport 22 -j RETURN") < idx(
        "-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN")
    assert idx("-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN") < idx(
        "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN") < idx(
        "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j RETURN") < idx(
        "-A ISTIO_OUTPUT -p tcp --dport 3306 -j ISTIO_REDIRECT") < idx(
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT")
    assert got[-1] == "-A ISTIO_OUTPUT -j ISTIO_REDIRECT"


def test_ports_uid_and_gid_are_the_settings() -> None:
    got = rules.rules(rules.checked(Capture(outbound_port=16001, inbound_port=16006,
                                            proxy_uid=2000, proxy_gid=3000)))
    assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 16001" in got
    assert "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006" in got
    assert "-A ISTIO_OUTPUT -m owner --uid-owner 2000 -j RETURN" in got
    assert "-A ISTIO_OUTPUT -m owner --gid-owner 3000 -j RETURN" in got


def test_many_ports_are_chunked_for_multiport() -> None:
    ports = ",".join(str(p) for p in range(1000, 1020))
    got = rules.rules(from_annotations({A + "excludeOutboundPorts": ports}))
    tcp = [r for r in got if r.startswith("-A ISTIO_OUTPUT -p tcp -m multiport")]
    assert len(tcp) == 2 and tcp[0].count(",") == 14 and tcp[1].count(",") == 4


@pytest.mark.parametrize(("annotation", "value", "says"), [
    ("excludeOutboundIPRanges", "10.0.0.0/33", "is not a CIDR"),
    ("excludeOutboundIPRanges", "*", "'*' is not allowed"),
    ("includeOutboundIPRanges", "fd00::/8", "IPv6"),
    ("excludeInboundPorts", "http", "is not a port"),
    ("includeInboundPorts", "70000", "is not a port"),
    ("excludeOutboundPorts", "*", "'*' is not allowed"),
])
def test_bad_annotations_are_refused_naming_the_annotation(
        annotation: str, value: str, says: str) -> None:
    with pytest.raises(CaptureError) as err:
        from_annotations({A + annotation: value})
    message = str(err.value)
    assert f"annotation {A}{annotation}" in message and says in message


def test_flags_round_trip_through_the_cli_parser() -> None:
    from typer.testing import CliRunner

    from tollway.cli.main import app

    cap = from_annotations({A + "excludeOutboundIPRanges": "10.0.0.0/8",
                            A + "excludeOutboundPorts": "22", A + "includeOutboundPorts": "53"})
    out = CliRunner().invoke(app, ["iptables", "--dry-run", *rules.flags(cap)])
    assert out.exit_code == 0, out.output
    assert out.stdout == rules.restore_text(cap)


def test_cli_refuses_a_bad_flag_in_one_sentence() -> None:
    from typer.testing import CliRunner

    from tollway.cli.main import app

    out = CliRunner().invoke(app, ["iptables", "--dry-run", "-x", "nonsense"])
    assert out.exit_code == 2
    assert "--exclude-outbound-ip-ranges: 'nonsense' is not a CIDR" in out.output
    out = CliRunner().invoke(app, ["iptables", "--dry-run", "-m", "TPROXY"])
    assert out.exit_code == 2 and "only REDIRECT" in out.output


_port = st.integers(1, 65535).map(str)
_cidr = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(
    lambda t: str(__import__("ipaddress").ip_network((t[0], t[1]), strict=False)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    excl_ports=st.lists(_port, max_size=20), incl_in=st.lists(_port, max_size=5),
    excl_ranges=st.lists(_cidr, max_size=5), incl_ranges=st.lists(_cidr, max_size=5),
)
def test_every_valid_setting_renders_and_keeps_the_proxy_exempt(
        excl_ports: list[str], incl_in: list[str], excl_ranges: list[str],
        incl_ranges: list[str]) -> None:
    cap = from_annotations({
        A + "excludeOutboundPorts": ",".join(excl_ports),
        A + "includeInboundPorts": ",".join(incl_in) or "*",
        A + "excludeOutboundIPRanges": ",".join(excl_ranges),
        A + "includeOutboundIPRanges": ",".join(incl_ranges) or "*",
    })
    got = rules.rules(cap)
    # the proxy's own traffic returns before any redirect of outbound traffic
    exempt = got.index("-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN")
    redirects = [i for i, r in enumerate(got)
                 if r.startswith("-A ISTIO_OUTPUT") and r.endswith("-j ISTIO_REDIRECT")]
    assert redirects and min(redirects) > exempt
    assert all(r.count(",") < rules.MULTIPORT_MAX for r in got)
    assert len(got) == len(set(got))
