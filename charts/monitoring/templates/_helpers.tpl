{{/* The chart's name, or nameOverride. */}}
{{- define "monitoring.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The objects' base name: fullnameOverride, else the release name (with the chart's name unless it holds it already). */}}
{{- define "monitoring.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* name-version, as the helm.sh/chart label wants it. */}}
{{- define "monitoring.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels every object carries. */}}
{{- define "monitoring.labels" -}}
helm.sh/chart: {{ include "monitoring.chart" . }}
app.kubernetes.io/name: {{ include "monitoring.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kumo
{{- end -}}

{{/* The labels that select one component's pods: they never change across upgrades. Call with (dict "ctx" . "component" "prometheus"). */}}
{{- define "monitoring.selectorLabels" -}}
app.kubernetes.io/name: {{ include "monitoring.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The labels of one component's objects. Call with (dict "ctx" . "component" "prometheus"). */}}
{{- define "monitoring.componentLabels" -}}
{{ include "monitoring.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Prometheus's objects' name, and its ServiceAccount's. */}}
{{- define "monitoring.prometheus.fullname" -}}
{{- printf "%s-prometheus" (include "monitoring.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Grafana's objects' name. */}}
{{- define "monitoring.grafana.fullname" -}}
{{- printf "%s-grafana" (include "monitoring.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The ServiceAccount Prometheus runs as. */}}
{{- define "monitoring.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "monitoring.prometheus.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Prometheus's image: the tag defaults to "v" + the chart's appVersion (Prometheus tags its images v2.54.1). */}}
{{- define "monitoring.prometheus.image" -}}
{{- $tag := .Values.prometheus.image.tag | default (printf "v%s" (trimPrefix "v" .Chart.AppVersion)) -}}
{{- printf "%s:%s" .Values.prometheus.image.repository $tag -}}
{{- end -}}

{{/* Grafana's image: its own release, from values. */}}
{{- define "monitoring.grafana.image" -}}
{{- printf "%s:%s" .Values.grafana.image.repository (required "grafana.image.tag is required" .Values.grafana.image.tag) -}}
{{- end -}}
