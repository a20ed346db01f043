#!/usr/bin/env bash
# Remove the tickercast release from Minikube. The data and MLflow volumes are kept (Helm's
# resource-policy keep) unless --purge is given; --stop also stops Minikube.
set -euo pipefail

# shellcheck source=deploy/minikube/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

purge=false
stop=false
for arg in "$@"; do
  case "${arg}" in
    --purge) purge=true ;;
    --stop) stop=true ;;
    -h | --help)
      echo "usage: $0 [--purge] [--stop]"
      echo "  --purge  also delete the data and MLflow volumes and the namespace"
      echo "  --stop   also stop Minikube"
      exit 0
      ;;
    *) die "unknown argument ${arg} (try --help)" ;;
  esac
done

require minikube "Install it from https://minikube.sigs.k8s.io/docs/start/"
require kubectl "Install it (https://kubernetes.io/docs/tasks/tools/)."
require helm "Install Helm 3.8+ (https://helm.sh/docs/intro/install/)."

if ! minikube status --profile "${MINIKUBE_PROFILE}" >/dev/null 2>&1; then
  log "Minikube profile ${MINIKUBE_PROFILE} is not running: nothing to remove"
  exit 0
fi

if helm status "${RELEASE}" --namespace "${NAMESPACE}" >/dev/null 2>&1; then
  log "Uninstalling release ${RELEASE} from namespace ${NAMESPACE}"
  helm uninstall "${RELEASE}" --namespace "${NAMESPACE}" --wait
else
  log "Release ${RELEASE} is not installed in namespace ${NAMESPACE}"
fi

if [[ "${purge}" == true ]]; then
  log "Deleting the kept volumes and the namespace ${NAMESPACE}"
  kubectl delete pvc --namespace "${NAMESPACE}" -l "app.kubernetes.io/instance=${RELEASE}" --ignore-not-found
  kubectl delete pv -l "app.kubernetes.io/instance=${RELEASE}" --ignore-not-found
  kubectl delete namespace "${NAMESPACE}" --ignore-not-found
  minikube ssh --profile "${MINIKUBE_PROFILE}" -- sudo rm -rf /data/tickercast
fi

if [[ "${stop}" == true ]]; then
  log "Stopping Minikube"
  minikube stop --profile "${MINIKUBE_PROFILE}"
fi
