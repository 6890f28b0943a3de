"""AuthorizationPolicy `when` keys: validation refuses exactly what the proxy cannot evaluate.

Before, an unknown key passed validation and the proxy NACKed the snapshot (the policy
then silently stayed at its previous version). Now `tollway validate`/`apply` refuses it
with one finding on the key's line; the proxy's compile and the validator read the same
vocabulary (`tollway.snapshot.conditions`), which this property checks for any key.
"""

from __future__ import annotations

import json
import string

from hypothesis import given
from hypothesis import strategies as st

from tollway.config.load import load_text
from tollway.control.translate import security
from tollway.proxy.core import authz
from tollway.snapshot import conditions, types

KEY_PATH = "spec.rules[0].when[0].key"
IP_KEYS = {"source.ip", "remote.ip", "destination.ip"}
KEYS = st.one_of(
    st.sampled_from(sorted(conditions.PLAIN_CONDITIONS)),
    st.builds(lambda p, a, close: p + a + close, st.sampled_from(conditions.BRACKET_CONDITIONS),
              st.text(alphabet=string.ascii_lowercase + "-_.", max_size=12),
              st.sampled_from(["]", "", "]]"])),
    st.text(alphabet=string.ascii_letters + string.digits + ".[]-_*", min_size=1, max_size=40),
)


def manifest(key: str) -> str:
    value = "10.0.0.0/8" if key in IP_KEYS else "8080" if key == "destination.port" else "x"
    return f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: payment-service-authz
  namespace: payments
spec:
  rules:
  - when:
    - key: {json.dumps(key)}
      values: [{json.dumps(value)}]
"""


def proxy_compiles(key: str) -> bool:
    value = "10.0.0.0/8" if key in IP_KEYS else "8080" if key == "destination.port" else "x"
    rule = types.AuthzRule(conditions=(types.AuthzCondition(key=key, values=(value,)),))
    try:
        authz.compile_authz(types.Authz(policies=(types.AuthzPolicy(name="p/a", rules=(rule,)),)))
    except ValueError:
        return False
    return True


@given(KEYS)
def test_validation_refuses_exactly_the_keys_the_proxy_cannot_evaluate(key: str) -> None:
    result = load_text(manifest(key), "ap.yaml")
    on_key = [f for f in result.findings if f.path == KEY_PATH and f.is_error]
    if proxy_compiles(key):
        assert result.ok, [f.render() for f in result.findings]
        policy = security.policy_from_resource(next(iter(result.resources)))
        assert policy.rules[0].conditions[0].key == key  # reaches the snapshot as written
    else:
        assert not result.ok and len(on_key) == 1, [f.render() for f in result.findings]
        assert f"unknown condition key '{key}'" in on_key[0].message
        assert on_key[0].line == 9


def test_the_finding_names_the_field_lists_the_keys_and_suggests_the_fix() -> None:
    result = load_text(manifest("request.header[x-token]"), "ap.yaml")
    (finding,) = [f for f in result.findings if f.is_error]
    text = finding.render()
    assert text.startswith("ap.yaml:9: AuthorizationPolicy/payment-service-authz: "
                           f"{KEY_PATH}: error: ")
    assert "did you mean 'request.headers[x-token]'?" in text
    for known in ("source.namespace", "request.headers[NAME]", "connection.sni"):
        assert known in text
    assert "Traceback" not in text


def test_proxy_and_config_share_one_vocabulary() -> None:
    assert authz.known_condition is conditions.known_condition
