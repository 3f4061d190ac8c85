#!/usr/bin/env bash
# Creates MediSync on Fly.io in the order that works: apps, then the inventory volumes (one per
# replica app, each app one Machine), then secrets, then the inventory replicas (they elect a leader
# among themselves), then appointment, the database preparation, the notification consumer, the
# medication service, and last the public gateway. Needs flyctl logged in and, in the environment, the
# managed databases' URLs (never commit them):
#   DATABASE_URL, INVENTORY_DATABASE_URL, NOTIFICATION_DATABASE_URL, MEDICATION_DATABASE_URL,
#   AUDIT_DATABASE_URL (the gateway's audit trail), REDIS_URL
# and the identity provider's JWKS URL, AUTH_JWKS_URL (https; the gateway does not start without
# keys), with AUTH_ISSUER set to that provider's issuer in gateway.fly.toml.
# Optional: FLY_ORG (default: personal), FLY_REGION (default: fra).
set -euo pipefail
cd "$(dirname "$0")"
: "${DATABASE_URL:?set DATABASE_URL}" "${INVENTORY_DATABASE_URL:?set INVENTORY_DATABASE_URL}" "${REDIS_URL:?set REDIS_URL}"
: "${NOTIFICATION_DATABASE_URL:?set NOTIFICATION_DATABASE_URL}" "${MEDICATION_DATABASE_URL:?set MEDICATION_DATABASE_URL}"
: "${AUDIT_DATABASE_URL:?set AUDIT_DATABASE_URL}"
: "${AUTH_JWKS_URL:?set AUTH_JWKS_URL}"
# Checked before anything is created: a gateway with the placeholder issuer refuses every token.
case "$AUTH_JWKS_URL" in
  https://*) ;;
  *) echo "create.sh: AUTH_JWKS_URL must be https (whoever can swap the keys can mint tokens)" >&2; exit 1 ;;
esac
issuer=$(sed -n 's/^ *AUTH_ISSUER *= *"\(.*\)"$/\1/p' gateway.fly.toml)
case "$issuer" in
  "" | *example.com*) echo "create.sh: set AUTH_ISSUER in gateway.fly.toml to your identity provider's issuer (now: '$issuer')" >&2; exit 1 ;;
esac
org=${FLY_ORG:-personal}
region=${FLY_REGION:-fra}
replicas=(inv-1 inv-2 inv-3)

create_app() { fly apps list --json | grep -q "\"$1\"" || fly apps create "$1" --org "$org"; }

for id in "${replicas[@]}"; do create_app "medisync-$id"; done
create_app medisync-appointment
create_app medisync-notification
create_app medisync-medication
create_app medisync-gateway

# One volume per inventory Machine; --require-unique-zone keeps two replicas off one host.
for id in "${replicas[@]}"; do
  app=medisync-$id
  if ! fly volumes list --app "$app" --json | grep -q '"inventory_data"'; then
    fly volumes create inventory_data --app "$app" --region "$region" --size 5 --require-unique-zone --yes
  fi
done

# Mutual TLS: a CA and one certificate per app (an inventory replica's names its id), made on this
# machine by `medisync certs` (the CA key stays here, in $certs: keep it safe, it signs renewals) and
# set as each app's base64 secrets; the fly.toml files' [[files]] write them under /etc/medisync/tls.
certs=${MEDISYNC_CERTS_DIR:-$(pwd)/../../data/fly-certs}
(cd ../.. && npx tsx src/cli/main.ts certs --out "$certs" gateway=gateway/gateway \
  appointment=appointment/appointment notification=notification/notification \
  medication=medication/medication inv-1=inventory/inv-1 inv-2=inventory/inv-2 inv-3=inventory/inv-3)
tls_secrets() { # <app> <certificate name>
  fly secrets set --app "$1" --stage MEDISYNC_TLS_CA="$(base64 -w0 "$certs/ca.crt")" \
    MEDISYNC_TLS_CERT="$(base64 -w0 "$certs/$2.crt")" MEDISYNC_TLS_KEY="$(base64 -w0 "$certs/$2.key")"
}
for id in "${replicas[@]}"; do tls_secrets "medisync-$id" "$id"; done
for name in appointment notification medication gateway; do tls_secrets "medisync-$name" "$name"; done

for id in "${replicas[@]}"; do
  fly secrets set --app "medisync-$id" --stage INVENTORY_DATABASE_URL="$INVENTORY_DATABASE_URL" REDIS_URL="$REDIS_URL"
done
fly secrets set --app medisync-appointment --stage DATABASE_URL="$DATABASE_URL" REDIS_URL="$REDIS_URL"
fly secrets set --app medisync-notification --stage NOTIFICATION_DATABASE_URL="$NOTIFICATION_DATABASE_URL" REDIS_URL="$REDIS_URL"
fly secrets set --app medisync-medication --stage MEDICATION_DATABASE_URL="$MEDICATION_DATABASE_URL" REDIS_URL="$REDIS_URL"
fly secrets set --app medisync-gateway --stage DATABASE_URL="$DATABASE_URL" AUDIT_DATABASE_URL="$AUDIT_DATABASE_URL" REDIS_URL="$REDIS_URL" AUTH_JWKS_URL="$AUTH_JWKS_URL"

# Inventory first, all three without waiting on each other: a lone replica cannot elect a leader.
for id in "${replicas[@]}"; do
  fly deploy --config inventory.fly.toml --app "medisync-$id" --env INVENTORY_ID="$id" \
    --ha=false --detach
done

# appointment.fly.toml's release_command runs `prepare` (migrations, no demo data) before it serves.
fly deploy --config appointment.fly.toml --ha=false
fly scale count 2 --app medisync-appointment --yes

# The consumer needs the stream, not the gateway: after appointment, which produces the events;
# before the gateway, which serves its routes (/v1/patients/{id}/notifications, ...) over its gRPC port.
fly deploy --config notification.fly.toml --ha=false
fly scale count 2 --app medisync-notification --yes

# Medication dials appointment and inventory (both up by now) and creates its own database at start;
# before the gateway, which routes /v1/prescriptions to it.
fly deploy --config medication.fly.toml --ha=false
fly scale count 2 --app medisync-medication --yes

fly deploy --config gateway.fly.toml
fly scale count 2 --app medisync-gateway --yes
fly status --app medisync-gateway
