#!/usr/bin/env bash
# Make the Secrets that the manifests reference and git never holds. Idempotent: a Secret that
# exists is left as it is (to rotate one, delete it and run this again, then restart the pods).
#
#   export FENXIAO_IDENTITY_SECRET=...            # shared with the gateway (shared/identity.py)
#   export ORDERS_WECHATPAY_MCHID=... ...         # every ORDERS_*, PAYOUT_*, REFERRAL_*, ENGAGEMENT_*, CONSOLE_*, COMMISSION_*
#   export PAYOUT_MERCHANT_KEY_FILE=apiclient_key.pem PAYOUT_PLATFORM_KEY_FILE=pub_key.pem
#   deploy/k8s/secrets.sh [namespace]             # default: fenxiao
#
# Per service:
#   <service>-pg    kubernetes.io/basic-auth, the service's PostgreSQL role: username = the
#                   service, a generated password; CloudNativePG sets it on the role (managed.roles)
#   <service>-app   FENXIAO_IDENTITY_* and the variables with the service's prefix (its
#                   WeChat credentials: only orders, payout, referral and engagement have any)
#   payout-wechatpay-keys   the merchant private key and WeChat Pay's public key, as files
# Not here: the Kafka credentials (Strimzi's User Operator makes the Secret <service> for each
# KafkaUser), fenxiao-pg-app (CloudNativePG), fenxiao-kafka-cluster-ca-cert (Strimzi).
# With External Secrets or sealed secrets, produce the same names and keys instead.
set -euo pipefail
ns="${1:-fenxiao}"
: "${FENXIAO_IDENTITY_SECRET:?set FENXIAO_IDENTITY_SECRET (the gateway signs identities with it)}"

exists() { kubectl -n "$ns" get secret "$1" >/dev/null 2>&1; }
apply() { kubectl -n "$ns" apply -f - >/dev/null; echo "created secret/$1"; }

for svc in referral orders commission payout engagement console; do
  if ! exists "$svc-pg"; then
    # hex: safe inside the DATABASE_URL the Deployment composes from it
    kubectl -n "$ns" create secret generic "$svc-pg" --type=kubernetes.io/basic-auth \
      --from-literal=username="$svc" --from-literal=password="$(openssl rand -hex 24)" \
      --dry-run=client -o yaml | kubectl label --local -f - cnpg.io/reload=true -o yaml | apply "$svc-pg"
  fi
  if ! exists "$svc-app"; then
    prefix="$(tr '[:lower:]' '[:upper:]' <<<"$svc")_"
    args=()
    # the identity key ring (FENXIAO_IDENTITY_SECRET/_KID, during a rotation _PREVIOUS_SECRET/_KID)
    # and the service's own prefixed settings
    while IFS='=' read -r name _; do
      if [[ "$name" == FENXIAO_IDENTITY_* || ( "$name" == "${prefix}"* && "$name" != *_FILE ) ]]; then
        args+=(--from-literal="$name=${!name}")
      fi
    done < <(env)
    kubectl -n "$ns" create secret generic "$svc-app" "${args[@]}" --dry-run=client -o yaml | apply "$svc-app"
  fi
done

if ! exists payout-wechatpay-keys; then
  : "${PAYOUT_MERCHANT_KEY_FILE:?set PAYOUT_MERCHANT_KEY_FILE (apiclient_key.pem)}"
  : "${PAYOUT_PLATFORM_KEY_FILE:?set PAYOUT_PLATFORM_KEY_FILE (WeChat Pay public key, pub_key.pem)}"
  kubectl -n "$ns" create secret generic payout-wechatpay-keys \
    --from-file=apiclient_key.pem="$PAYOUT_MERCHANT_KEY_FILE" --from-file=pub_key.pem="$PAYOUT_PLATFORM_KEY_FILE" \
    --dry-run=client -o yaml | apply payout-wechatpay-keys
fi
