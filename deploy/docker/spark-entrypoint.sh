#!/usr/bin/env bash
# Entrypoint of the preprocess image. Spark on Kubernetes starts executor pods from this same image
# with the single argument `executor` and its settings in SPARK_* variables (as Spark's own image
# entrypoint expects); anything else is run as given (tickercast, spark-submit, python, ...).
set -euo pipefail

if [[ "${1:-}" == "executor" ]]; then
  # Spark passes the executor JVM options as SPARK_JAVA_OPT_<n> variables, in order.
  java_opts=()
  while IFS='=' read -r -d '' name value; do
    if [[ "${name}" == SPARK_JAVA_OPT_* ]]; then
      java_opts+=("${name#SPARK_JAVA_OPT_}=${value}")
    fi
  done < <(env -0)
  sorted_opts=()
  if ((${#java_opts[@]})); then
    while IFS= read -r -d '' entry; do
      sorted_opts+=("${entry#*=}")
    done < <(printf '%s\0' "${java_opts[@]}" | sort -z -t= -k1,1n)
  fi
  mkdir -p "${SPARK_LOCAL_DIRS:-/tmp/spark}"
  exec "${JAVA_HOME}/bin/java" \
    "${sorted_opts[@]}" \
    "-Xms${SPARK_EXECUTOR_MEMORY}" "-Xmx${SPARK_EXECUTOR_MEMORY}" \
    -cp "${SPARK_HOME}/jars/*${SPARK_CLASSPATH:+:${SPARK_CLASSPATH}}" \
    org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
    --driver-url "${SPARK_DRIVER_URL}" \
    --executor-id "${SPARK_EXECUTOR_ID}" \
    --cores "${SPARK_EXECUTOR_CORES}" \
    --app-id "${SPARK_APPLICATION_ID}" \
    --hostname "${SPARK_EXECUTOR_POD_IP}" \
    --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
    --podName "${SPARK_EXECUTOR_POD_NAME}"
fi

exec "$@"
