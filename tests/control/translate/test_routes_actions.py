"""VirtualService http rules -> Routes: every match field and action, with Istio's defaults."""

from __future__ import annotations

import base64

from translate_kit import CLIENT, client_config, fqdn, load, replica, split, unvalidated, vhost

from tollway.snapshot import types

MYAPP = fqdn("myapp")


def _vs(http: str, extra: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: myapp}}
spec:
  hosts: [myapp]
{extra}  http:
{http}
"""


def _routes(http: str, extra: str = "", node_labels: dict[str, str] | None = None,
            more: str = "") -> tuple[types.Route, ...]:
    node = CLIENT if node_labels is None else types.Node(name="n", labels=node_labels)
    resources = load(_vs(http, extra))
    if more:  # a delegate VS has no hosts, which the validator refuses for now
        resources = resources.with_changes([unvalidated(more)])
    config = client_config(resources, [replica("myapp", {"app": "myapp"})], node)
    return vhost(config, "myapp:8080").routes


def test_default_retries_and_no_timeout_when_absent() -> None:
    (r,) = _routes("  - route:\n    - destination: {host: myapp}")
    assert r.retries == types.Retry()
    assert r.timeout is None


def test_attempts_zero_disables_retries() -> None:
    (r,) = _routes("  - retries: {attempts: 0}\n    route:\n    - destination: {host: myapp}")
    assert r.retries is None


def test_retry_on_status_codes_become_retriable_codes() -> None:
    (r,) = _routes("  - retries: {attempts: 2, retryOn: '5xx,503,429'}\n"
                   "    route:\n    - destination: {host: myapp}")
    assert r.retries == types.Retry(attempts=2, retry_on=("5xx", "retriable-status-codes"),
                                    retriable_status_codes=(503, 429))


def test_every_match_field() -> None:
    http = """  - match:
    - name: m
      uri: {regex: "/v[0-9]+/.*"}
      method: {exact: POST}
      authority: {prefix: api}
      scheme: {exact: http}
      ignoreUriCase: true
      headers:
        x-present: {}
        x-star: {regex: "*"}
      withoutHeaders:
        x-debug: {exact: "1"}
      queryParams:
        q: {exact: ""}
    - uri: {prefix: /b}
    route:
    - destination: {host: myapp}
"""
    (r,) = _routes(http)
    first, second = r.matches
    assert first.uri == types.StringMatch(kind="regex", value="/v[0-9]+/.*")
    assert first.method == types.StringMatch(kind="exact", value="POST")
    assert first.authority == types.StringMatch(kind="prefix", value="api")
    assert first.ignore_uri_case and first.name == "m"
    assert first.headers == (types.HeaderMatch(name="x-present"),
                             types.HeaderMatch(name="x-star"),
                             types.HeaderMatch(name="x-debug", invert=True,
                                               match=types.StringMatch(kind="exact", value="1")))
    assert first.query_params == (types.QueryMatch(
        name="q", match=types.StringMatch(kind="exact", value="")),)
    assert second.uri == types.StringMatch(kind="prefix", value="/b")


def test_port_and_source_labels_decided_at_config_time() -> None:
    http = """  - match:
    - port: 9999
    route:
    - destination: {host: myapp, subset: a}
  - match:
    - sourceLabels: {app: tester}
    route:
    - destination: {host: myapp, subset: b}
  - route:
    - destination: {host: myapp, subset: c}
"""
    plain = _routes(http)
    assert [r.clusters[0].subset for r in plain] == ["c"]
    tester = _routes(http, node_labels={"app": "tester"})
    assert [r.clusters[0].subset for r in tester] == ["b"]  # a catch-all for this proxy


def test_weights_single_destination_takes_all_zero_weight_dropped() -> None:
    (one,) = _routes("  - route:\n    - destination: {host: myapp}\n      weight: 5")
    assert split(one) == {f"outbound|8080||{MYAPP}": 100}
    (two,) = _routes("  - route:\n    - destination: {host: myapp, subset: a}\n      weight: 0\n"
                     "    - destination: {host: myapp, subset: b}\n      weight: 30")
    assert split(two) == {f"outbound|8080|b|{MYAPP}": 30}


def test_rewrite_redirect_direct_response() -> None:
    http = """  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: other, redirectCode: 302}
  - match: [{uri: {prefix: /gone}}]
    directResponse: {status: 410, body: {bytes: BODY}}
  - rewrite: {uri: /v2, authority: up.example}
    route:
    - destination: {host: myapp}
""".replace("BODY", base64.b64encode(b"bye").decode())
    redirect, direct, rewritten = _routes(http)
    assert redirect.redirect == types.Redirect(uri="/new", authority="other", status=302)
    assert redirect.clusters == ()
    assert direct.direct_response == types.DirectResponse(status=410, body="bye")
    assert rewritten.rewrite == types.Rewrite(uri="/v2", authority="up.example")


def test_header_ops_and_host_set_rewrites_authority() -> None:
    http = """  - headers:
      request:
        set: {X-A: "1", host: new.example}
        add: {x-b: "2"}
        remove: [x-c]
      response:
        set: {x-r: "3"}
    route:
    - destination: {host: myapp}
      headers:
        request: {set: {x-dest: "d"}}
"""
    (r,) = _routes(http)
    assert r.request_headers == types.HeaderOps(set={"x-a": "1"}, add={"x-b": "2"},
                                                remove=("x-c",))
    assert r.response_headers == types.HeaderOps(set={"x-r": "3"})
    assert r.rewrite == types.Rewrite(authority="new.example")
    assert r.clusters[0].request_headers == types.HeaderOps(set={"x-dest": "d"})


def test_fault_without_percentage_affects_nothing() -> None:
    http = """  - fault:
      delay: {fixedDelay: 2s}
      abort: {httpStatus: 503, percentage: {value: 12.5}}
    route:
    - destination: {host: myapp}
"""
    (r,) = _routes(http)
    assert r.fault == types.Fault(delay=2.0, delay_percent=0.0, abort_status=503,
                                  abort_percent=12.5)


def test_mirror_forms() -> None:
    legacy = _routes("  - mirror: {host: myapp, subset: v2}\n    mirrorPercentage: {value: 25}\n"
                     "    route:\n    - destination: {host: myapp}")
    assert legacy[0].mirrors == (types.Mirror(cluster=f"outbound|8080|v2|{MYAPP}", host=MYAPP,
                                              percent=25.0),)
    many = _routes("  - mirrors:\n    - destination: {host: myapp, subset: a}\n"
                   "    - destination: {host: myapp, subset: b}\n      percentage: {value: 0}\n"
                   "    route:\n    - destination: {host: myapp}")
    assert [m.cluster for m in many[0].mirrors] == [f"outbound|8080|a|{MYAPP}"]


def test_cors_policy() -> None:
    http = """  - corsPolicy:
      allowOrigins: [{exact: "https://a.test"}, {regex: "https://.*\\\\.b\\\\.test"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-a]
      maxAge: 24h
      allowCredentials: true
    route:
    - destination: {host: myapp}
"""
    (r,) = _routes(http)
    assert r.cors is not None
    assert r.cors.allow_origins[0] == types.StringMatch(kind="exact", value="https://a.test")
    assert r.cors.allow_methods == ("GET", "POST")
    assert (r.cors.max_age, r.cors.allow_credentials) == (86400.0, True)


DELEGATE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: child}
spec:
  http:
  - match: [{headers: {x-v: {exact: "2"}}}]
    route:
    - destination: {host: myapp, subset: v2}
  - route:
    - destination: {host: myapp, subset: v1}
"""


def test_delegate_inlined_with_root_match() -> None:
    root = "  - match: [{uri: {prefix: /api}}]\n    delegate: {name: child}\n" \
           "  - route:\n    - destination: {host: myapp}"
    first, second, last = _routes(root, more=DELEGATE)
    assert first.matches[0].uri == types.StringMatch(kind="prefix", value="/api")
    assert first.matches[0].headers[0].name == "x-v"
    assert second.matches[0].uri == types.StringMatch(kind="prefix", value="/api")
    assert second.clusters[0].subset == "v1"
    assert last.clusters[0].subset == ""


def test_rules_after_a_catch_all_are_not_emitted() -> None:
    http = """  - match: [{uri: {prefix: /}, ignoreUriCase: true}]
    route:
    - destination: {host: myapp, subset: a}
  - match: [{headers: {x: {exact: "1"}}}]
    route:
    - destination: {host: myapp, subset: b}
"""
    assert [r.clusters[0].subset for r in _routes(http)] == ["a"]
    header_first = http.replace("prefix: /}", "prefix: /a}")
    assert [r.clusters[0].subset for r in _routes(header_first)] == ["a", "b"]
