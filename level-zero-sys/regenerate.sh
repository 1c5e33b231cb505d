#!/usr/bin/env bash
# Regenerates src/types.rs and src/functions.rs from the headers of Level Zero
# loader 1.20.6 (Debian 13's libze-dev, API 1.12), which
# scripts/fetch-level-zero-loader unpacks into the cache, and
# src/software_driver.rs from ze-software-driver/include/ze_software_driver.h.
# Run it after a header change and commit the result; the build itself never
# runs bindgen.
#   apt-get install libclang1-14 libclang-common-14-dev && cargo install bindgen-cli --locked && level-zero-sys/regenerate.sh
set -euo pipefail
cd "$(dirname "$0")"
inc=$(../scripts/fetch-level-zero-loader | tail -n 1)/include/level_zero
header=$(mktemp --suffix=.h)
types=$(mktemp)
functions=$(mktemp)
software_driver=$(mktemp)
trap 'rm -f "$header" "$types" "$functions" "$software_driver"' EXIT
printf '#include <ze_api.h>\n#include <ze_ddi.h>\n#include <zet_ddi.h>\n#include <zes_ddi.h>\n#include <loader/ze_loader.h>\n' >"$header"

# rustfmt's defaults, not the workspace's rustfmt.toml: the files stay as they were generated.
common=(--no-layout-tests --default-enum-style consts --no-prepend-enum-name
        --no-doc-comments --use-core --ctypes-prefix core::ffi --merge-extern-blocks
        --with-derive-default --rustfmt-configuration-file /dev/null)

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

# The software driver's extension, for the driver and for the tests that call
# it through the loader (which cannot link the driver crate); the header stays
# its one declaration. &CStr names go straight to zeDriverGetExtensionFunctionAddress.
bindgen ../ze-software-driver/include/ze_software_driver.h "${common[@]}" \
  --allowlist-type 'zex_.*' --allowlist-var 'ZEX_.*' --blocklist-type '_?ze[tsl]?_.*' \
  --with-derive-partialeq --with-derive-eq --generate-cstr --raw-line 'use crate::types::*;' \
  -o "$software_driver" -- -I"$inc"
# All written before any is replaced, so a failed run changes nothing.
chmod 644 "$types" "$functions" "$software_driver"
mv "$types" src/types.rs
mv "$functions" src/functions.rs
mv "$software_driver" src/software_driver.rs
