"""Which kinds Tollway reads, keyed by API group and kind, and the model that checks each.

Kinds are keyed by (group, kind), not by kind alone: Istio and the Gateway API both
have a `Gateway`, and a Gateway API Gateway is not an Istio one under a wrong version.
A kind is either *implemented* (it enters the resource set and changes behaviour) or
*accepted*: validated to its top level, kept out of the resource set, and reported with
one warning whose text (`ignored`) names exactly what Tollway does not enforce.

`top_fields` says where the validated body lives: ("spec",) for most kinds; Secret,
ConfigMap, RBAC kinds keep their fields at the top level, as Kubernetes does.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from tollway.config.models import (
    accepted,
    argo,
    flagger,
    istio_dr,
    istio_edge,
    istio_security,
    istio_sidecar,
    istio_telemetry,
    istio_vs,
    k8s,
)


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: str
    model: type[BaseModel]
    top_fields: tuple[str, ...] = ("spec",)
    spec_required: bool = True
    ignored: str | None = None  # accepted, not enforced: what Tollway does not do
    group: str = ""
    versions: tuple[str, ...] = ()

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/{v}" if self.group else v for v in self.versions)


_K8S = ("", ("v1",))
_APPS = ("apps", ("v1",))
_BATCH = ("batch", ("v1",))
_NETK8S = ("networking.k8s.io", ("v1",))
_RBAC = ("rbac.authorization.k8s.io", ("v1",))
_NET = ("networking.istio.io", ("v1", "v1beta1", "v1alpha3"))
_SEC = ("security.istio.io", ("v1", "v1beta1"))
_GWAPI = ("gateway.networking.k8s.io", ("v1", "v1beta1", "v1alpha2", "v1alpha3"))
_ARGO = ("argoproj.io", ("v1alpha1",))
_FLAGGER = ("flagger.app", ("v1beta1",))

_RBAC_NOTE = ("local mode has no Kubernetes API whose access RBAC could control "
              "(ignored here)")
_GW_NOTE = ("Tollway routes with Istio's Gateway and VirtualService, not the Gateway API "
            "(ignored here; translate it to an Istio Gateway + VirtualService)")
_POD_NOTE = ("local mode runs Deployments and Rollouts only, not {what} (ignored here; "
             "no replica is started for it)")


def _spec(where: tuple[str, tuple[str, ...]], kind: str, model: type[BaseModel],
          top: tuple[str, ...] = ("spec",), *, spec_required: bool = True,
          ignored: str | None = None) -> KindSpec:
    group, versions = where
    return KindSpec(kind, model, top, spec_required, ignored, group, versions)


_TABLE: tuple[KindSpec, ...] = (
    # --- implemented -----------------------------------------------------------------
    _spec(_K8S, "Service", k8s.ServiceSpec),
    _spec(_APPS, "Deployment", k8s.DeploymentSpec),
    _spec(_K8S, "Namespace", k8s.NamespaceSpec, spec_required=False),
    _spec(_K8S, "ServiceAccount", k8s.ServiceAccountBody,
          ("secrets", "imagePullSecrets", "automountServiceAccountToken")),
    _spec(_K8S, "Secret", k8s.SecretBody, ("type", "data", "stringData", "immutable")),
    _spec(_NET, "VirtualService", istio_vs.VirtualServiceSpec),
    _spec(_NET, "DestinationRule", istio_dr.DestinationRuleSpec),
    _spec(_NET, "Gateway", istio_edge.GatewaySpec),
    _spec(_NET, "ServiceEntry", istio_edge.ServiceEntrySpec),
    _spec(_NET, "WorkloadEntry", istio_edge.WorkloadEntrySpec),
    _spec(_NET, "Sidecar", istio_sidecar.SidecarSpec),
    _spec(_SEC, "PeerAuthentication", istio_security.PeerAuthenticationSpec,
          spec_required=False),
    _spec(_SEC, "AuthorizationPolicy", istio_security.AuthorizationPolicySpec,
          spec_required=False),
    _spec(_SEC, "RequestAuthentication", istio_security.RequestAuthenticationSpec,
          spec_required=False),
    _spec(_ARGO, "Rollout", argo.RolloutSpec),
    _spec(_ARGO, "AnalysisTemplate", argo.AnalysisTemplateSpec),
    _spec(_ARGO, "ClusterAnalysisTemplate", argo.AnalysisTemplateSpec),
    _spec(_ARGO, "AnalysisRun", argo.AnalysisRunSpec),
    _spec(_FLAGGER, "Canary", flagger.CanarySpec),
    _spec(_FLAGGER, "MetricTemplate", flagger.MetricTemplateSpec),
    _spec(("telemetry.istio.io", ("v1", "v1alpha1")), "Telemetry",
          istio_telemetry.TelemetrySpec, spec_required=False),
    # --- accepted with a warning: plain Kubernetes -----------------------------------
    _spec(_K8S, "ConfigMap", accepted.ConfigMapBody, ("data", "binaryData", "immutable"),
          ignored="local mode does not mount ConfigMaps into workloads; set env in the "
          "Deployment instead (ignored here)"),
    _spec(_K8S, "Pod", k8s.PodSpec, ignored=_POD_NOTE.format(what="bare Pods")),
    _spec(_K8S, "PersistentVolumeClaim", accepted.PersistentVolumeClaimSpec,
          ignored="local mode has no volumes; workloads use the local disk (ignored here)"),
    _spec(_K8S, "LimitRange", accepted.LimitRangeSpec,
          ignored="local mode does not limit resources (ignored here)"),
    _spec(_K8S, "ResourceQuota", accepted.ResourceQuotaSpec,
          ignored="local mode does not enforce quotas (ignored here)"),
    _spec(("autoscaling", ("v2", "v1", "v2beta2", "v2beta1")), "HorizontalPodAutoscaler",
          accepted.HorizontalPodAutoscalerSpec,
          ignored="local mode does not autoscale; replicas stay as the workload says "
          "(ignored here)"),
    _spec(("policy", ("v1", "v1beta1")), "PodDisruptionBudget",
          accepted.PodDisruptionBudgetSpec,
          ignored="local mode has no evictions to budget (ignored here)"),
    _spec(("scheduling.k8s.io", ("v1",)), "PriorityClass", accepted.PriorityClassBody,
          ("value", "globalDefault", "description", "preemptionPolicy"),
          ignored="local mode does not schedule pods (ignored here)"),
    _spec(_APPS, "StatefulSet", accepted.StatefulSetSpec,
          ignored=_POD_NOTE.format(what="StatefulSets")),
    _spec(_APPS, "DaemonSet", accepted.DaemonSetSpec,
          ignored=_POD_NOTE.format(what="DaemonSets")),
    _spec(_APPS, "ReplicaSet", accepted.ReplicaSetSpec,
          ignored=_POD_NOTE.format(what="bare ReplicaSets")),
    _spec(_BATCH, "Job", accepted.JobSpec, ignored=_POD_NOTE.format(what="Jobs")),
    _spec(_BATCH, "CronJob", accepted.CronJobSpec, ignored=_POD_NOTE.format(what="CronJobs")),
    _spec(_NETK8S, "Ingress", accepted.IngressSpec,
          ignored="Tollway's edge is an Istio Gateway; Kubernetes Ingress rules are not "
          "routed (ignored here)"),
    _spec(_NETK8S, "IngressClass", accepted.IngressClassSpec,
          ignored="Tollway's edge is an Istio Gateway (ignored here)"),
    _spec(_NETK8S, "NetworkPolicy", accepted.NetworkPolicySpec,
          ignored="local mode does not filter traffic by NetworkPolicy; use an "
          "AuthorizationPolicy, which the sidecars enforce (ignored here)"),
    _spec(_RBAC, "Role", accepted.RoleBody, ("rules",), ignored=_RBAC_NOTE),
    _spec(_RBAC, "ClusterRole", accepted.ClusterRoleBody, ("rules", "aggregationRule"),
          ignored=_RBAC_NOTE),
    _spec(_RBAC, "RoleBinding", accepted.RoleBindingBody, ("subjects", "roleRef"),
          ignored=_RBAC_NOTE),
    _spec(_RBAC, "ClusterRoleBinding", accepted.RoleBindingBody, ("subjects", "roleRef"),
          ignored=_RBAC_NOTE),
    # --- accepted with a warning: Gateway API ----------------------------------------
    _spec(_GWAPI, "GatewayClass", accepted.GatewayClassSpec, ignored=_GW_NOTE),
    _spec(_GWAPI, "Gateway", accepted.K8sGatewaySpec, ignored=_GW_NOTE),
    _spec(_GWAPI, "HTTPRoute", accepted.RouteSpec, ignored=_GW_NOTE),
    _spec(_GWAPI, "GRPCRoute", accepted.RouteSpec, ignored=_GW_NOTE),
    _spec(_GWAPI, "TLSRoute", accepted.RouteSpec, ignored=_GW_NOTE),
    _spec(_GWAPI, "TCPRoute", accepted.RouteSpec, ignored=_GW_NOTE),
    _spec(_GWAPI, "UDPRoute", accepted.RouteSpec, ignored=_GW_NOTE),
    _spec(("gateway.networking.k8s.io", ("v1",)), "ListenerSet", accepted.ListenerSetSpec,
          ignored=_GW_NOTE),
    _spec(_GWAPI, "ReferenceGrant", accepted.ReferenceGrantSpec, ignored=_GW_NOTE),
    _spec(_GWAPI, "BackendTLSPolicy", accepted.BackendTLSPolicySpec, ignored=_GW_NOTE),
    # --- accepted with a warning: Istio ----------------------------------------------
    _spec(("networking.istio.io", ("v1alpha3",)), "EnvoyFilter", accepted.EnvoyFilterSpec,
          ignored="Tollway's proxy is not Envoy; config patches cannot be applied "
          "(ignored here)"),
    _spec(("extensions.istio.io", ("v1alpha1",)), "WasmPlugin", accepted.WasmPluginSpec,
          ignored="Tollway's proxy does not run Wasm plugins (ignored here)"),
    _spec(("extensions.istio.io", ("v1alpha1",)), "TrafficExtension",
          accepted.TrafficExtensionSpec,
          ignored="Tollway's proxy does not run Lua or Wasm extensions (ignored here)"),
    _spec(("networking.istio.io", ("v1beta1",)), "ProxyConfig", accepted.ProxyConfigSpec,
          spec_required=False,
          ignored="Tollway's sidecar settings (concurrency, image, environment) are its "
          "own (ignored here)"),
    _spec(_NET, "WorkloadGroup", accepted.WorkloadGroupSpec,
          ignored="VM auto-registration is not implemented; declare each VM with a "
          "WorkloadEntry (ignored here)"),
    # --- accepted with a warning: Argo and Flagger -----------------------------------
    _spec(_ARGO, "Experiment", accepted.ExperimentSpec,
          ignored="Tollway does not run standalone Argo Experiments (ignored here)"),
    _spec(_FLAGGER, "AlertProvider", accepted.AlertProviderSpec,
          ignored="Tollway sends no alerts; canary events are in `tollway rollout status` "
          "and the dashboard (ignored here)"),
)

KINDS: dict[tuple[str, str], KindSpec] = {(s.group, s.kind): s for s in _TABLE}

_MIXER = "Mixer configuration, removed in Istio 1.8; delete it (Telemetry replaces it)"
# Upstream kinds found beside mesh manifests that Tollway deliberately does not read:
# refused with the reason, not a bare "unknown kind", so the user knows what to do.
NOT_MODELLED: dict[tuple[str, str], str] = {
    ("install.istio.io", "IstioOperator"): "it configures `istioctl install`, and Tollway "
    "runs its own control plane; keep it out of the folder Tollway reads",
    ("argoproj.io", "Application"): "it is Argo CD's deployment from Git; point Tollway "
    "at the manifests the Application syncs instead",
    ("argoproj.io", "AppProject"): "it is Argo CD's project settings; point Tollway at the "
    "manifests the Applications sync instead",
    ("split.smi-spec.io", "TrafficSplit"): "it is an SMI traffic split; Tollway shifts "
    "traffic with Istio VirtualServices (use trafficRouting.istio)",
    ("serving.knative.dev", "Service"): "it is a Knative Service; write a Deployment and a "
    "Service (or a Rollout) for Tollway",
    ("apiextensions.k8s.io", "CustomResourceDefinition"): "Tollway's kinds are built in; "
    "keep CRDs out of the folder Tollway reads",
    **{("config.istio.io", k): _MIXER for k in (
        "QuotaSpec", "QuotaSpecBinding", "handler", "instance", "rule", "attributemanifest",
        "HTTPAPISpec", "HTTPAPISpecBinding")},
}
# The implemented kinds by name (each name is implemented in one group only).
KIND_VERSIONS: dict[str, tuple[str, ...]] = {
    s.kind: s.api_versions for s in _TABLE if s.ignored is None
}
ALL_KINDS: tuple[KindSpec, ...] = _TABLE


def group_of(api_version: str) -> tuple[str, str]:
    """`networking.istio.io/v1` -> ("networking.istio.io", "v1"); `v1` -> ("", "v1")."""
    group, _, version = api_version.rpartition("/")
    return group, version


def lookup(api_version: str, kind: str) -> KindSpec | None:
    """The spec serving exactly this apiVersion and kind, or None."""
    group, version = group_of(api_version)
    spec = KINDS.get((group, kind))
    return spec if spec is not None and version in spec.versions else None


def of_group(api_version: str, kind: str) -> KindSpec | None:
    """The spec for this group and kind, whatever the version (for version errors)."""
    return KINDS.get((group_of(api_version)[0], kind))


def named(kind: str) -> tuple[KindSpec, ...]:
    """Every spec of this kind name, across groups."""
    return tuple(s for s in _TABLE if s.kind == kind)
