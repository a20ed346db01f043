#!/usr/bin/env bash
# Shared by up.sh and down.sh (sourced, not run).
# shellcheck shell=bash
# The variables below are used by the scripts that source this file.
# shellcheck disable=SC2034

RELEASE="${TICKERCAST_RELEASE:-tickercast}"
NAMESPACE="${TICKERCAST_NAMESPACE:-tickercast}"
MINIKUBE_PROFILE="${MINIKUBE_PROFILE:-minikube}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHART="${REPO_ROOT}/deploy/helm/tickercast"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# require TOOL HINT: stop with an install hint when TOOL is missing.
require() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required and was not found on PATH. $2"
}
