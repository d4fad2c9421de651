#!/bin/sh
# Rebuilds fuzz/seeds/ from tests/fixtures/ (deliveries/ and the objects beside it). Run from the
# repository root.
#   decode/     each fixture as is
#   service/    "\0" (an empty control block: a well-formed signed POST) + each envelope fixture
#   signature/  one correct lowercase signature value, no second key, then the fixture as body
set -e
rm -rf fuzz/seeds && mkdir -p fuzz/seeds/decode fuzz/seeds/service fuzz/seeds/signature
for f in tests/fixtures/*.json tests/fixtures/deliveries/*.json; do
    name=$(basename "$f" .json)
    cp "$f" "fuzz/seeds/decode/$name"
done
for f in tests/fixtures/deliveries/*.envelope.json; do
    name=$(basename "$f" .envelope.json)
    { printf '\000'; cat "$f"; } > "fuzz/seeds/service/$name"
done
for name in reaction.created message.created org.phone.qr; do
    # values: [Correct { uppercase: false, left: 0, right: 0 }], second_key: [], flip: 0, body
    { printf '\001\000\000\000\000\000\000\000\000\000\000\000\000\000'; cat "tests/fixtures/deliveries/$name.envelope.json"; } \
        > "fuzz/seeds/signature/$name"
done
