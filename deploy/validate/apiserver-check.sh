#!/usr/bin/env bash
# Server-side dry run of rendered manifests against a real, private API server:
#   deploy/validate/apiserver-check.sh RENDERED.yaml...
# Starts Debian's etcd and the kube-apiserver built by apiserver-build.sh on free loopback ports
# (nothing else: no scheduler, no kubelet, no network beyond 127.0.0.1), creates the CRDs that
# setup.sh cached (CloudNativePG, Strimzi, prometheus-operator), then for each file creates its
# Namespaces for real and `kubectl apply --dry-run=server`s everything else. The API server then
# judges what schemas cannot: selectors against templates, CEL rules of the CRDs, defaulting,
# immutable fields, and the namespace's Pod Security level (its warnings count as failures).
# Prints "== FILE: ok" or "== FILE: rejected" and the server's words; exits 1 if any was rejected.
#   --exec CMD   afterwards, run CMD with KUBECONFIG set and kubectl first on PATH (e.g. a test
#                of deploy/k8s/secrets.sh); its failure fails the check ("== exec: failed").
set -euo pipefail
exec_cmd=""
if [[ "${1:-}" == "--exec" ]]; then exec_cmd="$2"; shift 2; fi
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(bash "$here/apiserver-build.sh" --offline)" || bin="${FENXIAO_APISERVER_BIN:-}"
[[ -x "$bin/kube-apiserver" ]] || { echo "kube-apiserver not built: bash $here/apiserver-build.sh" >&2; exit 3; }
tools="$(bash "$here/setup.sh" --offline)" || exit 3
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
etcd_client=$(port); etcd_peer=$(port); api=$(port)

etcd --name check --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "check=http://127.0.0.1:$etcd_peer" >"$work/etcd.log" 2>&1 &
pids+=($!)

openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/sa.key" -pubout -out "$work/sa.pub" 2>/dev/null
token="$(openssl rand -hex 16)"
echo "$token,check,check,system:masters" > "$work/tokens.csv"
"$bin/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_client" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api" --cert-dir="$work/certs" \
  --token-auth-file="$work/tokens.csv" --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$work/sa.pub" \
  --service-account-signing-key-file="$work/sa.key" --service-cluster-ip-range=10.96.0.0/16 \
  >"$work/apiserver.log" 2>&1 &
pids+=($!)

cat > "$work/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: check, cluster: {server: "https://127.0.0.1:$api", insecure-skip-tls-verify: true}}]
users: [{name: check, user: {token: "$token"}}]
contexts: [{name: check, context: {cluster: check, user: check}}]
current-context: check
KC
export KUBECONFIG="$work/kubeconfig"
kubectl_bin="${FENXIAO_KUBECTL:-$bin/kubectl}"
[[ -x "$kubectl_bin" ]] || kubectl_bin="$(command -v kubectl)"
k() { "$kubectl_bin" "$@"; }
for _ in $(seq 1 240); do
  k get --raw /readyz >/dev/null 2>&1 && break
  sleep 0.5
done
k get --raw /readyz >/dev/null || { echo "kube-apiserver did not become ready:" >&2; tail -20 "$work/apiserver.log" >&2; exit 2; }

# the CRDs: `create`, since the largest (Strimzi's Kafka) exceeds the client-side apply annotation
k create -f "$tools/crds" >/dev/null
k wait --for condition=established --timeout=120s crd --all >/dev/null

status=0
for f in "$@"; do
  (cd "$here/../.." && uv run --frozen --quiet python - "$f" "$work/ns.yaml" "$work/rest.yaml") <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
ns = [d for d in docs if d.get("kind") == "Namespace"]
yaml.safe_dump_all(ns, open(sys.argv[2], "w"))
yaml.safe_dump_all([d for d in docs if d.get("kind") != "Namespace"], open(sys.argv[3], "w"))
PY
  if [[ -s "$work/ns.yaml" ]]; then k apply -f "$work/ns.yaml" >/dev/null; fi
  if out="$(k apply --dry-run=server -f "$work/rest.yaml" 2>&1)" && ! grep -q '^Warning:' <<<"$out"; then
    echo "== $f: ok ($(grep -c ' (server dry run)$' <<<"$out") objects)"
  else
    echo "== $f: rejected"
    grep -v ' (server dry run)$' <<<"$out" || true
    status=1
  fi
done
if [[ -n "$exec_cmd" ]]; then
  if PATH="$(dirname "$kubectl_bin"):$PATH" bash -c "$exec_cmd"; then echo "== exec: ok"; else echo "== exec: failed"; status=1; fi
fi
exit $status
