{{/* Names and labels shared by the templates. */}}
{{- define "tollway.name" -}}tollway-control-plane{{- end -}}

{{- define "tollway.labels" -}}
app.kubernetes.io/name: tollway
app.kubernetes.io/component: control-plane
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tollway.selector" -}}
app.kubernetes.io/name: tollway
app.kubernetes.io/component: control-plane
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tollway.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "tollway.sidecarImage" -}}
{{ .Values.sidecar.image.repository | default .Values.image.repository }}:{{ .Values.sidecar.image.tag | default .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "tollway.injectorConfig" -}}
image: {{ include "tollway.sidecarImage" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
command: {{ toJson .Values.sidecar.command }}
resources: {{ toJson .Values.sidecar.resources }}
initResources: {{ toJson .Values.sidecar.initResources }}
rewriteAppHTTPProbers: {{ .Values.sidecar.rewriteAppHTTPProbers }}
terminationDrainSeconds: {{ .Values.sidecar.terminationDrainSeconds }}
{{- end -}}

{{/*
The webhooks' serving certificate: reused from the Secret when the release already has one
(so an upgrade does not break the API server's trust), else a new CA and leaf made here.
The same dict feeds the Secret and both webhook configurations' caBundle.
*/}}
{{- define "tollway.webhookCerts" -}}
{{- $secretName := printf "%s-webhook-tls" (include "tollway.name" .) -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $secretName -}}
{{- if and $existing $existing.data (index $existing.data "ca.crt") -}}
ca: {{ index $existing.data "ca.crt" }}
crt: {{ index $existing.data "tls.crt" }}
key: {{ index $existing.data "tls.key" }}
{{- else -}}
{{- $svc := include "tollway.name" . -}}
{{- $ns := .Release.Namespace -}}
{{- $ca := genCA "tollway-webhook-ca" 3650 -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- $leaf := genSignedCert (printf "%s.%s.svc" $svc $ns) nil $names 3650 $ca -}}
ca: {{ $ca.Cert | b64enc }}
crt: {{ $leaf.Cert | b64enc }}
key: {{ $leaf.Key | b64enc }}
{{- end -}}
{{- end -}}
