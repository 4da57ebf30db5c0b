#!/usr/bin/env bash
# Real broker round trip (tests/integration/kafka_roundtrip.c), on a topic
# prefix of its own so runs never see each other's messages.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
eval "$("$ROOT/scripts/services" env kafka)"
exec "$ROOT/tests/integration/kafka_roundtrip" "$BK_KAFKA_BROKERS" "bkit-rt-$$-$RANDOM"
