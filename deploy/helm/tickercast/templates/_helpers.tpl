{{/*
Expand the name of the chart.
*/}}
{{- define "tickercast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "tickercast.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "tickercast.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "tickercast.labels" -}}
helm.sh/chart: {{ include "tickercast.chart" . }}
{{ include "tickercast.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tickercast
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "tickercast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tickercast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of one component: call with (dict "ctx" $ "component" "serve").
*/}}
{{- define "tickercast.componentLabels" -}}
{{ include "tickercast.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "tickercast.componentSelectorLabels" -}}
{{ include "tickercast.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Name of one component's objects, kept short enough for the pod hostnames derived from it:
call with (dict "ctx" $ "component" "train").
*/}}
{{- define "tickercast.componentName" -}}
{{- printf "%s-%s" (include "tickercast.fullname" .ctx | trunc 40 | trimSuffix "-") .component | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/*
Name of a Job of this release revision: Job pod templates are immutable, so each `helm upgrade`
creates fresh Jobs (the previous revision's are removed by Helm, finished ones also by their TTL).
*/}}
{{- define "tickercast.jobName" -}}
{{- printf "%s-r%d" (include "tickercast.componentName" .) .ctx.Release.Revision | trunc 58 | trimSuffix "-" }}
{{- end }}

{{/*
Image reference of a target: call with (dict "ctx" $ "repository" .Values.image.serve "tagSuffix" "").
*/}}
{{- define "tickercast.image" -}}
{{- $img := .ctx.Values.image -}}
{{- $tag := printf "%s%s" (default .ctx.Chart.AppVersion $img.tag) (default "" .tagSuffix) -}}
{{- if $img.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $img.registry) .repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .repository $tag -}}
{{- end -}}
{{- end }}

{{/*
The data volume's claim.
*/}}
{{- define "tickercast.dataClaim" -}}
{{- default (printf "%s-data" (include "tickercast.fullname" . | trunc 58 | trimSuffix "-")) .Values.storage.existingClaim }}
{{- end }}

{{- define "tickercast.mlflowName" -}}
{{- include "tickercast.componentName" (dict "ctx" . "component" "mlflow") }}
{{- end }}

{{/*
The MLflow tracking URI the Jobs and the API use ("" = the sqlite store under the data root).
*/}}
{{- define "tickercast.trackingUri" -}}
{{- if .Values.mlflow.enabled -}}
{{- printf "http://%s.%s.svc:%d" (include "tickercast.mlflowName" .) .Release.Namespace (int .Values.mlflow.port) -}}
{{- else -}}
{{- .Values.mlflow.trackingUri -}}
{{- end -}}
{{- end }}

{{/*
Security context of every container.
*/}}
{{- define "tickercast.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/*
Environment shared by every tickercast container.
*/}}
{{- define "tickercast.env" -}}
- name: TICKERCAST_DATA_ROOT
  value: /data
- name: TICKERCAST_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: HOME
  value: /tmp
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
{{- with (include "tickercast.trackingUri" .) }}
- name: MLFLOW_TRACKING_URI
  value: {{ . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The writable /tmp every pod gets (the root filesystem is read-only).
*/}}
{{- define "tickercast.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "tickercast.dataVolume" -}}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "tickercast.dataClaim" . }}
{{- end }}

{{/*
Pod-level settings shared by every pod: pull secrets, security context, scheduling. Call with
(dict "ctx" $ "nodeSelector" extraSelector "tolerations" extraTolerations); the extras are optional.
*/}}
{{- define "tickercast.podCommon" -}}
{{- $values := .ctx.Values }}
{{- $nodeSelector := merge (deepCopy (default (dict) .nodeSelector)) $values.nodeSelector }}
{{- $tolerations := concat $values.tolerations (default (list) .tolerations) }}
{{- with $values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
securityContext:
  {{- toYaml $values.podSecurityContext | nindent 2 }}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
