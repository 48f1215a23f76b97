{{/* Names and labels. */}}
{{- define "gopotency.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gopotency.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "gopotency.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "gopotency.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gopotency.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gopotency.name" . }}
app.kubernetes.io/component: ext-proc
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gopotency.labels" -}}
{{ include "gopotency.selectorLabels" . }}
app.kubernetes.io/part-of: gopotency
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "gopotency.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gopotency.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "gopotency.storeSecretName" -}}
{{- .Values.store.existingSecret | default (printf "%s-store" (include "gopotency.fullname" .)) -}}
{{- end -}}

{{/* The Service's DNS name, which Envoy dials. */}}
{{- define "gopotency.host" -}}
{{- printf "%s.%s.svc.%s" (include "gopotency.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* gopotency's configuration as the ConfigMap carries it: config, and
the envoy section the Istio and Envoy Gateway objects are generated from
(what each overlay's gopotency.yaml holds). */}}
{{- define "gopotency.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- range $k := list "store" "envoy" -}}
{{- if hasKey $c $k -}}
{{- fail (printf "config.%s: set by the chart (store: store.url or store.existingSecret; envoy: the form's values); leave it out" $k) -}}
{{- end -}}
{{- end -}}
{{- if ne .Values.form "envoy" -}}
{{- $e := dict "ext_proc_address" (printf "%s:9002" (include "gopotency.host" .)) "message_timeout" .Values.messageTimeout -}}
{{- if and (eq .Values.form "istio-sidecar") .Values.istioSidecar.policy -}}
{{- $_ := set $e "routes" (list (dict "prefix" "/" "policy" .Values.istioSidecar.policy)) -}}
{{- end -}}
{{- if and (eq .Values.form "istio-gateway") .Values.istioGateway.routes -}}
{{- $routes := list -}}
{{- range .Values.istioGateway.routes -}}
{{- $r := dict "name" .name -}}
{{- if .disabled -}}{{- $_ := set $r "disabled" true -}}{{- else -}}{{- $_ := set $r "policy" .policy -}}{{- end -}}
{{- $routes = append $routes $r -}}
{{- end -}}
{{- $_ := set $e "routes" $routes -}}
{{- end -}}
{{- $_ := set $c "envoy" $e -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* A label selector as label=value, ... (sorted). */}}
{{- define "gopotency.selectorText" -}}
{{- $out := list -}}
{{- range $k := keys . | sortAlpha -}}
{{- $out = append $out (printf "%s=%s" $k (get $ $k)) -}}
{{- end -}}
{{- join ", " $out -}}
{{- end -}}
