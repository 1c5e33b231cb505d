#!/usr/bin/env bash
# Regenerates src/types.rs and src/functions.rs from the installed Level Zero
# headers (Debian's libze-dev). Run it after a header upgrade and commit the result;
# the build itself never runs bindgen.
#   cargo install bindgen-cli --locked && level-zero-sys/regenerate.sh
set -euo pipefail
cd "$(dirname "$0")"
inc=$(pkg-config --variable=includedir level-zero)/level_zero
header=$(mktemp --suffix=.h)
trap 'rm -f "$header"' EXIT
printf '#include <ze_api.h>\n#include <ze_ddi.h>\n#include <zet_ddi.h>\n#include <zes_ddi.h>\n' >"$header"

common=(--no-layout-tests --default-enum-style consts --no-prepend-enum-name
        --no-doc-comments --use-core --ctypes-prefix core::ffi --merge-extern-blocks
        --with-derive-default)

bindgen "$header" "${common[@]}" \
  --allowlist-type '_?ze[ts]?_.*' --allowlist-var 'ZE[TS]?_.*' \
  --blocklist-function '.*' \
  -o src/types.rs -- -I"$inc"

# The API functions only; the DDI getters are the driver's to define, never the loader's to call.
bindgen "$header" "${common[@]}" \
  --allowlist-function 'ze[A-Z].*' --blocklist-function 'zeGet.*ProcAddrTable' \
  --blocklist-type '.*' --raw-line 'use crate::types::*;' \
  -o src/functions.rs -- -I"$inc"
