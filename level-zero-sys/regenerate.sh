#!/usr/bin/env bash
# Regenerates src/types.rs and src/functions.rs from the headers of Level Zero
# loader 1.20.6 (Debian 13's libze-dev, API 1.12), which
# scripts/fetch-level-zero-loader unpacks into the cache. Run it after a header
# upgrade and commit the result; the build itself never runs bindgen.
#   apt-get install libclang1-14 libclang-common-14-dev && cargo install bindgen-cli --locked && level-zero-sys/regenerate.sh
set -euo pipefail
cd "$(dirname "$0")"
inc=$(../scripts/fetch-level-zero-loader | tail -n 1)/include/level_zero
header=$(mktemp --suffix=.h)
types=$(mktemp)
functions=$(mktemp)
trap 'rm -f "$header" "$types" "$functions"' EXIT
printf '#include <ze_api.h>\n#include <ze_ddi.h>\n#include <zet_ddi.h>\n#include <zes_ddi.h>\n#include <loader/ze_loader.h>\n' >"$header"

common=(--no-layout-tests --default-enum-style consts --no-prepend-enum-name
        --no-doc-comments --use-core --ctypes-prefix core::ffi --merge-extern-blocks
        --with-derive-default)

bindgen "$header" "${common[@]}" \
  --allowlist-type '_?ze[tsl]?_.*' --allowlist-var 'ZE[TSL]?_.*' \
  --blocklist-function '.*' \
  -o "$types" -- -I"$inc"

# The API functions and the loader's own (zel*) only; the DDI getters are the
# driver's to define, never the loader's to call.
bindgen "$header" "${common[@]}" \
  --allowlist-function 'zel?[A-Z].*' --blocklist-function 'zeGet.*ProcAddrTable' \
  --blocklist-type '.*' --raw-line 'use crate::types::*;' \
  -o "$functions" -- -I"$inc"
# Both written before either is replaced, so a failed run changes nothing.
chmod 644 "$types" "$functions"
mv "$types" src/types.rs
mv "$functions" src/functions.rs
