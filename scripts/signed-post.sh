#!/usr/bin/env bash
# Sends a webhook notification to a Remedios webhook, signed as Meta signs it
# (X-Hub-Signature-256: sha256=<HMAC-SHA256 of the exact body bytes with the app secret>).
#
#   scripts/signed-post.sh [PAYLOAD.json] [URL]
#
# PAYLOAD defaults to scripts/payloads/text.json, URL to the local stack's
# http://127.0.0.1:${REMEDIOS_PORT:-8780}/webhook. The secret is $WHATSAPP_APP_SECRET
# (default: the local stack's "local-app-secret"). Prints the HTTP status and body:
# 200 = enqueued, 401 = bad signature, 413 = too large, 500 = not enqueued (Meta retries).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PAYLOAD="${1:-$ROOT/scripts/payloads/text.json}"
URL="${2:-http://127.0.0.1:${REMEDIOS_PORT:-8780}/webhook}"
SECRET="${WHATSAPP_APP_SECRET:-local-app-secret}"

[ -f "$PAYLOAD" ] || { echo "signed-post.sh: no such payload file: $PAYLOAD" >&2; exit 2; }
command -v openssl >/dev/null || { echo "signed-post.sh: openssl is needed to sign" >&2; exit 2; }

signature="$(openssl dgst -sha256 -hmac "$SECRET" -hex < "$PAYLOAD" | sed 's/^.*= *//')"
curl --silent --show-error --max-time 30 \
    --write-out '\nHTTP %{http_code}\n' \
    -H 'Content-Type: application/json' \
    -H "X-Hub-Signature-256: sha256=$signature" \
    --data-binary "@$PAYLOAD" \
    "$URL"
