#!/usr/bin/env bash
# A walk through memq's HTTP API with curl, against a running `memq start` (or `npm start`):
# append, read, stats, a flush plan, clear, delete. Every route: docs/operations.md, "HTTP API".
#
#   bash examples/curl.sh
#
# Environment (all optional):
#   MEMQ_URL      where memq listens (default http://localhost:3000)
#   MEMQ_API_KEY  an API key (default: the key memq created in .memq/api-key of this directory)
#   RESOURCE      memory resource (default customer-support)
#   INSTANCE      instance key (default curl-example)
set -euo pipefail

BASE="${MEMQ_URL:-http://localhost:3000}"
KEY="${MEMQ_API_KEY:-$(cat .memq/api-key)}"
RESOURCE="${RESOURCE:-customer-support}"
INSTANCE="${INSTANCE:-curl-example}"
MEMORY="$BASE/v1/memories/$RESOURCE/$INSTANCE"

# curl with the key; --fail-with-body makes an error answer (4xx/5xx) stop the script after
# printing memq's {"error":{...}}.
call() {
  curl -sS --fail-with-body -H "Authorization: Bearer $KEY" "$@"
  echo
}

step() {
  echo "==> $*"
}

step "append two messages and wait for the commit (the e-mail address is redacted before it is enqueued)"
call -X POST "$MEMORY/messages?wait=true" -H 'Content-Type: application/json' \
  -d '{"messages":[{"role":"user","content":"Hi, I am jane@example.com and my order #4411 is late"},{"role":"assistant","content":"Sorry about that, let me check order #4411."}]}'

step "read the window: messages as stored, summary, token counts, context_window"
call "$MEMORY/messages"

step "stats, with ?deep=true for the role distribution"
call "$MEMORY/stats?deep=true"

step "flush dry run: the plan, nothing changes"
call -X POST "$MEMORY/flush" -H 'Content-Type: application/json' -d '{"dry_run":true}'

step "clear: every message and the summary go, the instance stays"
call -X POST "$MEMORY/clear?wait=true" -H 'Content-Type: application/json' -d '{"confirm":true}'

step "delete the instance"
call -X DELETE "$MEMORY?wait=true"

step "read again: nothing left"
call "$MEMORY/messages"
