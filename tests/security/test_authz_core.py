"""proxy/core/authz.py pieces: condition keys, wildcards, paths, CIDRs (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.proxy.core import authz
from tollway.snapshot import types

TEXT = st.text(alphabet="abc/-.", max_size=12)


@pytest.mark.parametrize("key", [
    "request.headers[x-token]", "source.ip", "remote.ip", "source.namespace",
    "source.principal", "source.serviceAccount", "destination.port", "destination.ip",
    "request.auth.principal", "request.auth.claims[groups]", "connection.sni",
])
def test_known_condition_accepts_istio_keys(key: str) -> None:
    assert authz.known_condition(key)


@pytest.mark.parametrize("key", [
    "request.header[x]", "request.headers[]", "source.ips", "experimental.envoy.filters.",
    "", "request.headers[x",
])
def test_known_condition_rejects_unknown_keys(key: str) -> None:
    assert not authz.known_condition(key)


def test_envoy_filter_metadata_keys_are_known_and_always_absent() -> None:
    key = "experimental.envoy.filters.network.mysql_proxy[db.table]"
    assert authz.known_condition(key)
    want = types.AuthzRule(conditions=(types.AuthzCondition(key=key, values=("[update]",)),))
    unless = types.AuthzRule(conditions=(types.AuthzCondition(key=key, not_values=("x",)),))
    deny = authz.compile_authz(types.Authz(policies=(
        types.AuthzPolicy(name="a/deny", action="DENY", rules=(want,)),)))
    assert authz.evaluate(deny, authz.Request()).allowed  # values never match: not denied
    allow = authz.compile_authz(types.Authz(policies=(
        types.AuthzPolicy(name="a/allow", rules=(unless,)),)))
    assert authz.evaluate(allow, authz.Request()).allowed  # notValues of nothing: pass


def test_compile_refuses_unknown_condition_instead_of_ignoring_it() -> None:
    rule = types.AuthzRule(conditions=(types.AuthzCondition(key="nope", values=("1",)),))
    with pytest.raises(ValueError, match="nope"):
        authz.compile_authz(types.Authz(policies=(types.AuthzPolicy(name="a/b", rules=(rule,)),)))


def test_compile_refuses_bad_cidr() -> None:
    src = types.AuthzSource(ip_blocks=types.StringSet(values=("10.0.0.0/99",)))
    policy = types.AuthzPolicy(name="a/b", rules=(types.AuthzRule(sources=(src,)),))
    with pytest.raises(ValueError):
        authz.compile_authz(types.Authz(policies=(policy,)))


@given(prefix=st.text(alphabet="abc/-.", min_size=1, max_size=12), rest=TEXT)
def test_string_matcher_prefix_matches_every_extension(prefix: str, rest: str) -> None:
    assert authz.string_matcher(prefix + "*")(prefix + rest)


@given(suffix=st.text(alphabet="abc/-.", min_size=1, max_size=12), head=TEXT)
def test_string_matcher_suffix_matches_every_extension(suffix: str, head: str) -> None:
    assert authz.string_matcher("*" + suffix)(head + suffix)


@given(value=TEXT)
def test_string_matcher_presence_is_non_empty(value: str) -> None:
    assert authz.string_matcher("*")(value) is (value != "")


@given(a=TEXT, b=TEXT)
def test_string_matcher_exact_is_equality(a: str, b: str) -> None:
    assert authz.string_matcher(a.replace("*", "") or "x")(b) is (b == (a or "x"))


@pytest.mark.parametrize(("raw", "compared"), [
    ("/a/b?x=1", "/a/b"), ("/a/../b", "/a/../b"), ("/a//b?", "/a//b"), ("/", "/"),
])
def test_paths_compare_the_path_as_the_listener_normalized_it(raw: str, compared: str) -> None:
    """Normalization is the listener's (core/pathnorm.py, per mesh mode), not authz's."""
    assert authz.path_only(raw) == compared


def test_namespace_of_principal() -> None:
    assert authz.namespace_of("cluster.local/ns/checkout/sa/x") == "checkout"
    assert authz.namespace_of(None) is None
    assert authz.Request(principal=None).namespace is None


def test_no_policy_decision_names_the_reason() -> None:
    d = authz.evaluate(authz.compile_authz(types.Authz()), authz.Request())
    assert d.allowed and d.policy is None and "no ALLOW policy" in d.reason
