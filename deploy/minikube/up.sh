#!/usr/bin/env bash
# Deploy tickercast to Minikube end to end: build the three images inside Minikube's Docker,
# install the chart with ci/minikube.yaml, wait for preprocessing, training and the API, then
# ask the API for one forecast. Re-running it upgrades the release (and reruns the pipeline).
set -euo pipefail

# shellcheck source=deploy/minikube/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MINIKUBE_CPUS="${MINIKUBE_CPUS:-4}"
MINIKUBE_MEMORY="${MINIKUBE_MEMORY:-8g}"
IMAGE_TAG="${TICKERCAST_IMAGE_TAG:-dev}"
LOCAL_PORT="${TICKERCAST_LOCAL_PORT:-8000}"
TICKER="${TICKERCAST_TICKER:-MSFT}"

require minikube "Install it from https://minikube.sigs.k8s.io/docs/start/"
require docker "Install Docker (https://docs.docker.com/get-docker/); Minikube's docker driver and the image builds need it."
require kubectl "Install it (https://kubernetes.io/docs/tasks/tools/) or run: minikube kubectl -- (and alias it)."
require helm "Install Helm 3.8+ (https://helm.sh/docs/intro/install/)."
require curl "Install curl to check the API at the end."

if ! minikube status --profile "${MINIKUBE_PROFILE}" >/dev/null 2>&1; then
  log "Starting Minikube (${MINIKUBE_CPUS} CPUs, ${MINIKUBE_MEMORY})"
  minikube start --profile "${MINIKUBE_PROFILE}" --cpus "${MINIKUBE_CPUS}" --memory "${MINIKUBE_MEMORY}"
else
  log "Minikube profile ${MINIKUBE_PROFILE} is running"
fi
# The HPA needs CPU metrics.
minikube addons enable metrics-server --profile "${MINIKUBE_PROFILE}" >/dev/null

log "Building the images inside Minikube's Docker"
eval "$(minikube docker-env --profile "${MINIKUBE_PROFILE}")"
for target in preprocess train serve; do
  log "  tickercast-${target}:${IMAGE_TAG}"
  docker build --file "${REPO_ROOT}/deploy/docker/Dockerfile" --target "${target}" \
    --tag "tickercast-${target}:${IMAGE_TAG}" "${REPO_ROOT}"
done

# The data volume is a hostPath folder on the node (ci/minikube.yaml); the pods run as UID 10001.
minikube ssh --profile "${MINIKUBE_PROFILE}" -- sudo install -d -m 0775 -o 10001 -g 10001 /data/tickercast

log "Installing the chart (release ${RELEASE}, namespace ${NAMESPACE})"
helm upgrade --install "${RELEASE}" "${CHART}" \
  --namespace "${NAMESPACE}" --create-namespace \
  --values "${CHART}/ci/minikube.yaml" \
  --set image.tag="${IMAGE_TAG}"

selector() { echo "app.kubernetes.io/instance=${RELEASE},app.kubernetes.io/component=$1"; }

wait_job() {  # wait_job COMPONENT SECONDS: wait for the newest Job of COMPONENT (this revision's)
  local job conditions deadline=$((SECONDS + $2))
  job="$(kubectl get jobs --namespace "${NAMESPACE}" -l "$(selector "$1")" \
    --sort-by=.metadata.creationTimestamp -o name | tail -n 1)"
  [[ -n "${job}" ]] || die "no $1 Job found in namespace ${NAMESPACE}"
  log "Waiting for ${job} (up to $2 s)"
  while true; do
    conditions="$(kubectl get --namespace "${NAMESPACE}" "${job}" \
      -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')"
    case " ${conditions} " in
      *" Complete "*) return 0 ;;
      *" Failed "*)
        kubectl logs --namespace "${NAMESPACE}" "${job}" --all-containers --tail=50 || true
        die "${job} failed; see the logs above and: kubectl -n ${NAMESPACE} describe ${job}"
        ;;
    esac
    ((SECONDS < deadline)) || die "${job} did not finish within $2 s: kubectl -n ${NAMESPACE} describe ${job}"
    sleep 10
  done
}

wait_job preprocess 1800
wait_job train 3600

api="$(kubectl get deployment --namespace "${NAMESPACE}" -l "$(selector serve)" -o name | head -1)"
[[ -n "${api}" ]] || die "the API Deployment was not found"
log "Waiting for ${api} (it becomes ready once the champion model is loaded)"
kubectl rollout status --namespace "${NAMESPACE}" "${api}" --timeout=15m

log "Port-forwarding the API to 127.0.0.1:${LOCAL_PORT}"
service="$(kubectl get service --namespace "${NAMESPACE}" -l "$(selector serve)" -o name | head -1)"
kubectl port-forward --namespace "${NAMESPACE}" "${service}" "${LOCAL_PORT}:80" >/dev/null 2>&1 &
forward_pid=$!
trap 'kill "${forward_pid}" 2>/dev/null || true' EXIT
for _ in $(seq 1 30); do
  curl --silent --fail "http://127.0.0.1:${LOCAL_PORT}/readyz" >/dev/null 2>&1 && break
  sleep 1
done

log "GET /predict?ticker=${TICKER}"
curl --silent --show-error --fail "http://127.0.0.1:${LOCAL_PORT}/predict?ticker=${TICKER}"
echo
log "Done. helm test ${RELEASE} -n ${NAMESPACE} runs the chart's own check; deploy/minikube/down.sh removes it all."
