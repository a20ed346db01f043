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
The helpers below take a component (serve, mlflow, train, preprocess): its own values (image,
securityContext, podSecurityContext, affinity, nodeSelector, tolerations) refine the global ones,
which hold every default.

Image reference of a component's containers: call with (dict "ctx" $ "component" "train" "tagSuffix" "-gpu").
The component's image.repository and image.tag fall back to the global ones (MLflow runs the train
image); the registry is global.
*/}}
{{- define "tickercast.image" -}}
{{- $global := .ctx.Values.image -}}
{{- $component := default (dict) (index .ctx.Values .component) -}}
{{- $own := default (dict) $component.image -}}
{{- $repositories := dict "preprocess" $global.preprocess "train" $global.train "mlflow" $global.train "serve" $global.serve -}}
{{- $repository := default (index $repositories .component) $own.repository -}}
{{- $tag := printf "%s%s" (default .ctx.Chart.AppVersion (default $global.tag $own.tag)) (default "" .tagSuffix) -}}
{{- if $global.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $global.registry) $repository $tag -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end }}

{{/*
imagePullPolicy of a component's containers: call with (dict "ctx" $ "component" "serve").
*/}}
{{- define "tickercast.imagePullPolicy" -}}
{{- $component := default (dict) (index .ctx.Values .component) -}}
{{- $own := default (dict) $component.image -}}
{{- default .ctx.Values.image.pullPolicy $own.pullPolicy -}}
{{- end }}

{{/*
The data volume's claim.
*/}}
{{- define "tickercast.dataClaim" -}}
{{- default (printf "%s-data" (include "tickercast.fullname" . | trunc 58 | trimSuffix "-")) .Values.storage.existingClaim }}
{{- end }}

{{/*
The hostPath PersistentVolume behind the data claim (storage.hostPath.enabled) and its class,
named by both the volume and the claim.
*/}}
{{- define "tickercast.hostPathVolumeName" -}}
{{- printf "%s-%s" .Release.Namespace (include "tickercast.dataClaim" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tickercast.hostPathStorageClass" -}}
{{- printf "%s-hostpath" (include "tickercast.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tickercast.mlflowName" -}}
{{- include "tickercast.componentName" (dict "ctx" . "component" "mlflow") }}
{{- end }}

{{/*
Name of the Spark application's objects (kubernetes mode): its account, driver Service, executor
pod template and network policy.
*/}}
{{- define "tickercast.sparkName" -}}
{{- include "tickercast.componentName" (dict "ctx" . "component" "spark") }}
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
Security context of a component's containers: its securityContext merged over the global
containerSecurityContext. Call with (dict "ctx" $ "component" "serve").
*/}}
{{- define "tickercast.containerSecurityContext" -}}
{{- $own := default (dict) (index .ctx.Values .component) -}}
{{- toYaml (mergeOverwrite (deepCopy .ctx.Values.containerSecurityContext) (default (dict) $own.securityContext)) }}
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
Pod-level settings of a component's pods: pull secrets, security context, scheduling. Call with
(dict "ctx" $ "component" "train" "nodeSelector" extraSelector "tolerations" extraTolerations); the
extras are optional. The component's podSecurityContext is merged over the global one, its
nodeSelector over the global one (the extra selector over both), its tolerations are added to the
global ones, and its affinity, when set, replaces the global one.
*/}}
{{- define "tickercast.podCommon" -}}
{{- $values := .ctx.Values }}
{{- $own := default (dict) (index .ctx.Values .component) }}
{{- $nodeSelector := merge (deepCopy (default (dict) .nodeSelector)) (default (dict) $own.nodeSelector) (deepCopy $values.nodeSelector) }}
{{- $tolerations := concat $values.tolerations (default (list) $own.tolerations) (default (list) .tolerations) }}
{{- $securityContext := mergeOverwrite (deepCopy $values.podSecurityContext) (default (dict) $own.podSecurityContext) }}
{{- $affinity := default $values.affinity $own.affinity }}
{{- with $values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
securityContext:
  {{- toYaml $securityContext | nindent 2 }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
