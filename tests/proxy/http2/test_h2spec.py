"""h2spec (summerwind/h2spec, pinned in tests/tools/build.sh) against live Tollway listeners.

Every case of the generic, http2 and hpack sections, strict cases included (`-S`), is run
against an h2c listener (prior knowledge on a port that also speaks HTTP/1.1, as a sidecar's
inbound sniffs) and against a TLS gateway that negotiates `h2` by ALPN (`-t -k`). The JUnit
report is read case by case: a case must pass unless it is listed in ACCEPTED with the reason
we deviate and what Envoy does there. A listed case that starts passing fails the test too, so
the list can only ever say what is true today. After the run a well-behaved request on the same
listener must still be answered: 146 hostile connections leave no damage behind.
"""

from __future__ import annotations

from pathlib import Path

from h2client import H2Client
from proxy_harness import Harness, cluster, config, route
from test_h2_downstream import _gateway, _self_signed

from tests.tools.h2spec import check, parse_report, run_h2spec

# case id -> why Tollway deviates, naming what Envoy does. Per listener shape.
ACCEPTED: dict[str, dict[str, str]] = {
    "h2c": {
        "http2/3.5/2": "a sniffing port (HTTP/1.1 and h2c prior knowledge) hands bytes that do "
                       "not start `PRI * HTTP/2` to the HTTP/1.1 parser, which answers 400 and "
                       "closes; Envoy's AUTO codec (ConnectionManagerUtility::"
                       "determineNextProtocol) does the same, h2spec wants a silent close",
    },
    "tls": {},
}


def _still_serves(address: tuple[str, int], **kw: object) -> None:
    c = H2Client(address, **kw)  # type: ignore[arg-type]
    try:
        assert c.get("/after-h2spec", authority="shop.example.com").status == 200
    finally:
        c.close()


def test_h2spec_against_an_h2c_listener(harness: Harness, tmp_path: Path) -> None:
    up = harness.upstream("app")
    p = harness.proxy(config([route(("c", 100))], [cluster("c", up)]))
    results = run_h2spec(p.listener_address("main"), tmp_path, tls=False)
    check(results, ACCEPTED["h2c"])
    _still_serves(p.listener_address("main"))


def test_h2spec_against_a_tls_gateway_with_alpn_h2(harness: Harness, tmp_path: Path) -> None:
    import ssl

    cert, key = _self_signed("shop.example.com")
    _, p = _gateway(harness, cert, key)
    results = run_h2spec(p.listener_address("main"), tmp_path, tls=True)
    check(results, ACCEPTED["tls"])
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    _still_serves(p.listener_address("main"), ctx=ctx)


_REPORT = """<testsuites>
<testsuite package="http2/5.1" tests="3">
  <testcase package="http2/5.1" classname="ok"></testcase>
  <testcase package="http2/5.1" classname="bad"><failure>GOAWAY expected</failure></testcase>
  <testcase package="http2/5.1" classname="skip"><skipped>no</skipped></testcase>
</testsuite>
<testsuite package="hpack/6.1" tests="1">
  <testcase package="hpack/6.1" classname="err"><error>Timeout</error></testcase>
</testsuite>
</testsuites>"""


def test_the_report_reader_counts_failures_errors_and_skips_as_not_passed() -> None:
    r = parse_report(_REPORT)
    assert r == {"http2/5.1/1": None, "http2/5.1/2": "bad: failure: GOAWAY expected",
                 "http2/5.1/3": "skip: skipped: no", "hpack/6.1/1": "err: error: Timeout"}


def test_the_report_reader_reads_raw_markup_in_a_failure() -> None:
    """h2spec puts a failure's text into the report unescaped: it must still be read."""
    raw = ('<testsuites><testsuite package="http2/6.9" tests="2">'
           '<testcase package="http2/6.9" classname="a"><error>read tcp 1->2: <nil> & EOF'
           '</error></testcase><testcase package="http2/6.9" classname="b"></testcase>'
           '<testcase package="http2/6.9" classname="c"><error>Connection closed\n'
           'PING Frame (opaque_data:h2spec\x00\x00)</error></testcase>'
           '</testsuite></testsuites>')
    assert parse_report(raw) == {
        "http2/6.9/1": "a: error: read tcp 1->2: <nil> & EOF", "http2/6.9/2": None,
        "http2/6.9/3": "c: error: Connection closed\nPING Frame (opaque_data:h2spec\\x00"
                       "\\x00)"}
