#!/usr/bin/env bash
# Make the Secrets that the manifests reference and git never holds. Idempotent: a Secret that
# exists is left as it is (to rotate one, delete it and run this again, then restart the pods).
#
#   export FENXIAO_IDENTITY_SECRET=...            # shared with the gateway (shared/identity.py)
#   export ORDERS_WECHATPAY_APIV3_KEY=...         # required: orders' APIv3 key (32 characters)
#   export REFERRAL_CODE_SECRET=...               # required: promoter codes' key (>= 32 bytes)
#   export REFERRAL_PERSONAL_DATA_KEY=... PAYOUT_IDENTITY_MASTER_KEY=...
#                                                 # required: crypto-shredding's master keys, each
#                                                 # `openssl rand -base64 32`; keep them in your secret
#                                                 # store too (lost, the sealed personal data is unreadable)
#   export PAYOUT_WECHAT_APIV3_KEY=...            # required: payout's APIv3 key (32 characters)
#   export ... ...                                # the other secret ORDERS_*, PAYOUT_*, REFERRAL_*, ENGAGEMENT_*, CONSOLE_*, COMMISSION_*
#   export ORDERS_MERCHANT_KEY_FILE=apiclient_key.pem ORDERS_PLATFORM_KEY_FILE=pub_key.pem
#   export PAYOUT_MERCHANT_KEY_FILE=apiclient_key.pem PAYOUT_PLATFORM_KEY_FILE=pub_key.pem
#   deploy/k8s/secrets.sh [namespace]             # default: fenxiao
#
# Per service:
#   <service>-pg    kubernetes.io/basic-auth, the service's PostgreSQL role: username = the
#                   service, a generated password; CloudNativePG sets it on the role (managed.roles)
#   <service>-app   FENXIAO_IDENTITY_* and the variables with the service's prefix (its
#                   WeChat credentials: only orders, payout, referral and engagement have any);
#                   the settings its Deployment names one by one (generate.py `secret_env`) are
#                   required: orders-app ORDERS_WECHATPAY_APIV3_KEY, referral-app REFERRAL_CODE_SECRET
#                   and REFERRAL_PERSONAL_DATA_KEY, payout-app PAYOUT_WECHAT_APIV3_KEY and
#                   PAYOUT_IDENTITY_MASTER_KEY
#   orders-wechatpay-keys, payout-wechatpay-keys   the merchant private key and WeChat Pay's
#                   public key, as the files apiclient_key.pem and pub_key.pem
# orders' and payout's non-secret WeChat Pay settings (merchant, appid, serials, notify URL) are not
# here: they are in the overlay's ConfigMaps (overlays/<env>/orders-wechatpay.env,
# payout-wechatpay.env); a variable given here too overrides it.
# Not here: the Kafka credentials (Strimzi's User Operator makes the Secret <service> for each
# KafkaUser), fenxiao-pg-app (CloudNativePG), fenxiao-kafka-cluster-ca-cert (Strimzi).
# With External Secrets or sealed secrets, produce the same names and keys instead.
set -euo pipefail
ns="${1:-fenxiao}"
: "${FENXIAO_IDENTITY_SECRET:?set FENXIAO_IDENTITY_SECRET (the gateway signs identities with it)}"

exists() { kubectl -n "$ns" get secret "$1" >/dev/null 2>&1; }
apply() { kubectl -n "$ns" apply -f - >/dev/null; echo "created secret/$1"; }
need() { [[ -n "${!1:-}" ]] || { echo "secrets.sh: set $1 ($2)" >&2; exit 1; }; }
# a crypto-shredding master key: base64 of exactly 32 bytes (shared/shredding.py refuses anything else)
master_key() {
  need "$1" "crypto-shredding's master key: openssl rand -base64 32"
  [[ "$(printf '%s' "${!1}" | base64 -d 2>/dev/null | wc -c)" -eq 32 ]] \
    || { echo "secrets.sh: $1 must be base64 of 32 bytes (openssl rand -base64 32)" >&2; exit 1; }
}

# Check everything before creating anything: a half-made set of Secrets is worse than none.
if ! exists orders-app; then
  need ORDERS_WECHATPAY_APIV3_KEY "orders' WeChat Pay APIv3 key"
  (( ${#ORDERS_WECHATPAY_APIV3_KEY} == 32 )) || { echo "secrets.sh: ORDERS_WECHATPAY_APIV3_KEY must be 32 characters" >&2; exit 1; }
fi
if ! exists referral-app; then
  need REFERRAL_CODE_SECRET "the promoter codes' key, at least 32 random bytes"
  (( ${#REFERRAL_CODE_SECRET} >= 32 )) || { echo "secrets.sh: REFERRAL_CODE_SECRET must be at least 32 bytes" >&2; exit 1; }
  master_key REFERRAL_PERSONAL_DATA_KEY
fi
if ! exists payout-app; then
  need PAYOUT_WECHAT_APIV3_KEY "payout's WeChat Pay APIv3 key"
  (( ${#PAYOUT_WECHAT_APIV3_KEY} == 32 )) || { echo "secrets.sh: PAYOUT_WECHAT_APIV3_KEY must be 32 characters" >&2; exit 1; }
  master_key PAYOUT_IDENTITY_MASTER_KEY
fi
for svc in orders payout; do
  if ! exists "$svc-wechatpay-keys"; then
    up="$(tr '[:lower:]' '[:upper:]' <<<"$svc")"
    need "${up}_MERCHANT_KEY_FILE" "the merchant API private key file, apiclient_key.pem"
    need "${up}_PLATFORM_KEY_FILE" "WeChat Pay's public key file, pub_key.pem"
  fi
done

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

for svc in orders payout; do
  if ! exists "$svc-wechatpay-keys"; then
    up="$(tr '[:lower:]' '[:upper:]' <<<"$svc")"
    merchant="${up}_MERCHANT_KEY_FILE" platform="${up}_PLATFORM_KEY_FILE"
    kubectl -n "$ns" create secret generic "$svc-wechatpay-keys" \
      --from-file=apiclient_key.pem="${!merchant}" --from-file=pub_key.pem="${!platform}" \
      --dry-run=client -o yaml | apply "$svc-wechatpay-keys"
  fi
done
