#!/usr/bin/env bash
# Build kube-apiserver (and kubectl, where the machine has none) from the k8s.io/kubernetes Go module (its staging modules
# replaced by their published releases), and install Debian's etcd-server, for the server-side
# dry run (deploy/validate/apiserver-check.sh). Cached like setup.sh; prints the bin directory.
# Slow when cold (a large Go build): .ci/run runs it outside the quick path (FENXIAO_K8S_APISERVER=1).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source <(sed 's/#.*//' "$here/versions.env")
cache="${FENXIAO_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fenxiao-k8s}/apiserver-v${KUBERNETES_SERVER_VERSION}"
have_kubectl() { [[ -x "$cache/bin/kubectl" ]] || command -v kubectl >/dev/null; }
if [[ -x "$cache/bin/kube-apiserver" ]] && have_kubectl && command -v etcd >/dev/null; then
  echo "$cache/bin"; exit 0
fi
if [[ "${1:-}" == "--offline" ]]; then exit 3; fi
started=$SECONDS
if ! command -v etcd >/dev/null; then
  apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >&2
  # the package starts a system etcd on 2379; ours runs on private ports, the system one is not needed
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi
mkdir -p "$cache/src" "$cache/bin"
cd "$cache/src"
staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider cluster-bootstrap
  code-generator component-base component-helpers controller-manager cri-api cri-client csi-translation-lib
  dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy
  kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission sample-apiserver sample-cli-plugin
  sample-controller)
minor="v0.${KUBERNETES_SERVER_VERSION#1.}"
{
  echo "module fenxiao.local/apiserver"
  echo
  echo "go 1.24.0"
  echo
  echo "require k8s.io/kubernetes v${KUBERNETES_SERVER_VERSION}"
  echo
  for m in "${staging[@]}"; do echo "replace k8s.io/$m => k8s.io/$m $minor"; done
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
export GOFLAGS=-mod=mod
go mod tidy >&2
echo "apiserver: modules resolved ($((SECONDS - started)) s)" >&2
[[ -x "$cache/bin/kube-apiserver" ]] || go build -trimpath -ldflags "-s -w" -o "$cache/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
echo "apiserver: kube-apiserver built ($((SECONDS - started)) s)" >&2
if ! have_kubectl; then  # the machine's kubectl (any recent one) serves; build it only where there is none
  go build -trimpath -ldflags "-s -w" -o "$cache/bin/kubectl" k8s.io/kubernetes/cmd/kubectl
  echo "apiserver: kubectl built ($((SECONDS - started)) s)" >&2
fi
echo "$cache/bin"
