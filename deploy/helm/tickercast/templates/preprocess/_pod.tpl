{{/*
The preprocess pod, shared by the Job (job.yaml) and the CronJob (cronjob.yaml). In local mode
Spark runs inside this pod (`tickercast preprocess --master local[N]`); in kubernetes mode this pod
is the Spark driver (client mode) and asks the API server for executor pods (spark/, rbac/).
*/}}
{{- define "tickercast.sparkMaster" -}}
{{- if eq .Values.preprocess.spark.mode "kubernetes" -}}
{{- printf "k8s://%s" .Values.preprocess.spark.apiServer -}}
{{- else -}}
{{- printf "local[%d]" (int .Values.preprocess.spark.localCores) -}}
{{- end -}}
{{- end }}

{{- define "tickercast.preprocessPod" -}}
{{- $spark := .Values.preprocess.spark }}
{{- $k8s := eq $spark.mode "kubernetes" }}
{{- $sparkName := include "tickercast.sparkName" . }}
metadata:
  labels:
    {{- include "tickercast.componentLabels" (dict "ctx" $ "component" "preprocess") | nindent 4 }}
    {{- if $k8s }}
    tickercast.io/spark-app: {{ $sparkName }}
    tickercast.io/spark-role: driver
    {{- end }}
spec:
  restartPolicy: Never
  {{- if $k8s }}
  serviceAccountName: {{ $sparkName }}
  # The driver talks to the API server, through a short-lived projected token rather than the
  # automatically mounted one.
  {{- end }}
  automountServiceAccountToken: false
  {{- include "tickercast.podCommon" (dict "ctx" $ "component" "preprocess") | nindent 2 }}
  initContainers:
    - name: seed-raw-data
      image: {{ include "tickercast.image" (dict "ctx" $ "component" "preprocess") }}
      imagePullPolicy: {{ include "tickercast.imagePullPolicy" (dict "ctx" $ "component" "preprocess") }}
      securityContext:
        {{- include "tickercast.containerSecurityContext" (dict "ctx" $ "component" "preprocess") | nindent 8 }}
      {{- $seed := .Values.preprocess.seed }}
      command:
        - /bin/sh
        - -c
        - |
          set -eu
          if [ -n "$(ls -A /data/raw/prices 2>/dev/null)" ]; then
            echo "raw data present under /data/raw: nothing to seed"
          {{- if eq $seed.source "sample" }}
          else
            tickercast data sample --out /data
          {{- else if eq $seed.source "synth" }}
          else
            tickercast data synth --out /data --tickers {{ int $seed.synthTickers }} --days {{ int $seed.synthDays }} --seed {{ int $seed.synthSeed }}
          {{- else }}
          else
            echo "error: /data/raw/prices is empty and preprocess.seed.source is none; copy raw CSVs to the data volume" >&2
            exit 1
          {{- end }}
          fi
      env:
        {{- include "tickercast.env" . | nindent 8 }}
      resources:
        {{- toYaml .Values.preprocess.resources | nindent 8 }}
      volumeMounts:
        - name: data
          mountPath: /data
        - name: tmp
          mountPath: /tmp
  containers:
    - name: preprocess
      image: {{ include "tickercast.image" (dict "ctx" $ "component" "preprocess") }}
      imagePullPolicy: {{ include "tickercast.imagePullPolicy" (dict "ctx" $ "component" "preprocess") }}
      securityContext:
        {{- include "tickercast.containerSecurityContext" (dict "ctx" $ "component" "preprocess") | nindent 8 }}
      workingDir: /tmp
      args:
        {{- if $k8s }}
        - spark-submit
        - --master={{ include "tickercast.sparkMaster" . }}
        - --deploy-mode=client
        - --name={{ $sparkName }}
        - --driver-memory={{ $spark.driverMemory }}
        {{- /* The job's generated code has methods over HotSpot's 8000-bytecode JIT limit; a batch job wants throughput, not short GC pauses. */}}
        - --driver-java-options=-XX:-DontCompileHugeMethods -XX:+UseParallelGC
        - --conf=spark.executor.extraJavaOptions=-XX:-DontCompileHugeMethods -XX:+UseParallelGC
        - --conf=spark.kubernetes.namespace={{ .Release.Namespace }}
        - --conf=spark.kubernetes.container.image={{ include "tickercast.image" (dict "ctx" $ "component" "preprocess") }}
        - --conf=spark.kubernetes.container.image.pullPolicy={{ include "tickercast.imagePullPolicy" (dict "ctx" $ "component" "preprocess") }}
        - --conf=spark.kubernetes.driver.pod.name=$(POD_NAME)
        - --conf=spark.kubernetes.executor.podTemplateFile=/etc/tickercast/spark/executor-pod.yaml
        - --conf=spark.kubernetes.executor.podTemplateContainerName=spark-executor
        - --conf=spark.kubernetes.executor.volumes.persistentVolumeClaim.data.options.claimName={{ include "tickercast.dataClaim" . }}
        - --conf=spark.kubernetes.executor.volumes.persistentVolumeClaim.data.mount.path=/data
        - --conf=spark.kubernetes.executor.request.cores={{ $spark.executor.cores }}
        - --conf=spark.kubernetes.executor.limit.cores={{ $spark.executor.cores }}
        - --conf=spark.kubernetes.executor.deleteOnTermination=true
        - --conf=spark.executor.instances={{ $spark.executor.instances }}
        - --conf=spark.executor.cores={{ $spark.executor.cores }}
        - --conf=spark.executor.memory={{ $spark.executor.memory }}
        - --conf=spark.executor.memoryOverhead={{ $spark.executor.memoryOverhead }}
        - --conf=spark.driver.host={{ $sparkName }}-driver.{{ .Release.Namespace }}.svc
        - --conf=spark.driver.bindAddress=0.0.0.0
        - --conf=spark.driver.port={{ $spark.driverPort }}
        - --conf=spark.driver.blockManager.port={{ $spark.blockManagerPort }}
        - --conf=spark.local.dir=/tmp/spark
        - --conf=spark.sql.shuffle.partitions={{ $spark.shufflePartitions }}
        {{- range $key, $value := $spark.extraConf }}
        - --conf={{ $key }}={{ $value }}
        {{- end }}
        - {{ $spark.appPath }}
        - --data=/data
        {{- else }}
        - tickercast
        - preprocess
        - --data=/data
        - --master={{ include "tickercast.sparkMaster" . }}
        {{- end }}
        {{- range .Values.preprocess.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        {{- include "tickercast.env" . | nindent 8 }}
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: TICKERCAST_SPARK__MASTER
          value: {{ include "tickercast.sparkMaster" . | quote }}
        - name: TICKERCAST_SPARK__DRIVER_MEMORY
          value: {{ $spark.driverMemory | quote }}
        - name: TICKERCAST_SPARK__SHUFFLE_PARTITIONS
          value: {{ $spark.shufflePartitions | quote }}
        - name: SPARK_LOCAL_DIRS
          value: /tmp/spark
      {{- if $k8s }}
      ports:
        - name: spark-driver
          containerPort: {{ $spark.driverPort }}
          protocol: TCP
        - name: spark-blockmgr
          containerPort: {{ $spark.blockManagerPort }}
          protocol: TCP
      {{- end }}
      resources:
        {{- toYaml .Values.preprocess.resources | nindent 8 }}
      volumeMounts:
        - name: data
          mountPath: /data
        - name: tmp
          mountPath: /tmp
        {{- if $k8s }}
        - name: spark-templates
          mountPath: /etc/tickercast/spark
          readOnly: true
        - name: api-token
          mountPath: /var/run/secrets/kubernetes.io/serviceaccount
          readOnly: true
        {{- end }}
  volumes:
    {{- include "tickercast.dataVolume" . | nindent 4 }}
    {{- include "tickercast.tmpVolume" . | nindent 4 }}
    {{- if $k8s }}
    - name: spark-templates
      configMap:
        name: {{ $sparkName }}-templates
    - name: api-token
      projected:
        defaultMode: 0440
        sources:
          - serviceAccountToken:
              path: token
              expirationSeconds: 3600
          - configMap:
              name: kube-root-ca.crt
              items:
                - key: ca.crt
                  path: ca.crt
          - downwardAPI:
              items:
                - path: namespace
                  fieldRef:
                    fieldPath: metadata.namespace
    {{- end }}
{{- end }}

{{- define "tickercast.preprocessJobSpec" -}}
backoffLimit: {{ .Values.preprocess.backoffLimit }}
activeDeadlineSeconds: {{ .Values.preprocess.activeDeadlineSeconds }}
ttlSecondsAfterFinished: {{ .Values.preprocess.ttlSecondsAfterFinished }}
template:
  {{- include "tickercast.preprocessPod" . | nindent 2 }}
{{- end }}
