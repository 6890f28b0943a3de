"""Which (apiVersion, kind) pairs Tollway reads, and the model that validates each.

`top_fields` says where the validated body lives: ("spec",) for most kinds; Secret and
ServiceAccount keep their fields at the top level, as Kubernetes does.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from tollway.config.models import argo, flagger, istio_dr, istio_edge, istio_security, istio_vs, k8s


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: str
    model: type[BaseModel]
    top_fields: tuple[str, ...] = ("spec",)
    spec_required: bool = True


_NET = ("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3")
_SEC = ("security.istio.io/v1", "security.istio.io/v1beta1")
_ARGO = ("argoproj.io/v1alpha1",)
_FLAGGER = ("flagger.app/v1beta1",)

_TABLE: tuple[tuple[tuple[str, ...], KindSpec], ...] = (
    (("v1",), KindSpec("Service", k8s.ServiceSpec)),
    (("apps/v1",), KindSpec("Deployment", k8s.DeploymentSpec)),
    (("v1",), KindSpec("Namespace", k8s.NamespaceSpec, spec_required=False)),
    (("v1",), KindSpec("ServiceAccount", k8s.ServiceAccountBody,
                       ("secrets", "imagePullSecrets", "automountServiceAccountToken"))),
    (("v1",), KindSpec("Secret", k8s.SecretBody, ("type", "data", "stringData", "immutable"))),
    (_NET, KindSpec("VirtualService", istio_vs.VirtualServiceSpec)),
    (_NET, KindSpec("DestinationRule", istio_dr.DestinationRuleSpec)),
    (_NET, KindSpec("Gateway", istio_edge.GatewaySpec)),
    (_NET, KindSpec("ServiceEntry", istio_edge.ServiceEntrySpec)),
    (_NET, KindSpec("WorkloadEntry", istio_edge.WorkloadEntrySpec)),
    (_SEC, KindSpec("PeerAuthentication", istio_security.PeerAuthenticationSpec,
                    spec_required=False)),
    (_SEC, KindSpec("AuthorizationPolicy", istio_security.AuthorizationPolicySpec,
                    spec_required=False)),
    (_ARGO, KindSpec("Rollout", argo.RolloutSpec)),
    (_ARGO, KindSpec("AnalysisTemplate", argo.AnalysisTemplateSpec)),
    (_ARGO, KindSpec("ClusterAnalysisTemplate", argo.AnalysisTemplateSpec)),
    (_ARGO, KindSpec("AnalysisRun", argo.AnalysisRunSpec)),
    (_FLAGGER, KindSpec("Canary", flagger.CanarySpec)),
    (_FLAGGER, KindSpec("MetricTemplate", flagger.MetricTemplateSpec)),
)

KINDS: dict[tuple[str, str], KindSpec] = {
    (api, spec.kind): spec for apis, spec in _TABLE for api in apis
}
KIND_VERSIONS: dict[str, tuple[str, ...]] = {spec.kind: apis for apis, spec in _TABLE}


def lookup(api_version: str, kind: str) -> KindSpec | None:
    return KINDS.get((api_version, kind))
