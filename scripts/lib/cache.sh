# Sourced by the scripts/fetch-* scripts: the download cache they share,
# outside the repository.
#
#   $cache         ${XDG_CACHE_HOME:-$HOME/.cache}/xpu-caching-host-allocator
#   $cache/wheels  every wheel downloaded, kept for later runs

cache=${XDG_CACHE_HOME:-$HOME/.cache}/xpu-caching-host-allocator
mkdir -p "$cache/wheels"

# download_wheel REQUIREMENT GLOB PLATFORM...: the wheel matching GLOB in
# $cache/wheels, downloaded with pip only if none is there yet. The wheels are
# for Linux x86-64 whatever Python runs pip; pip takes platform tags literally,
# so every tag a wanted wheel may carry is listed. Prints the wheel's path.
download_wheel() {
  local requirement=$1 pattern=$2 found partial file
  shift 2
  local platforms=()
  for file in "$@"; do
    platforms+=(--platform "$file")
  done
  found=$(compgen -G "$cache/wheels/$pattern" | head -n 1 || true)
  if [[ -z $found ]]; then
    partial=$(mktemp -d "$cache/wheels/.download.XXXXXX")
    if ! pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      "${platforms[@]}" --dest "$partial" "$requirement" >&2; then
      rm -rf "$partial"
      echo "$0: pip could not download $requirement" >&2
      exit 1
    fi
    for file in "$partial"/*.whl; do
      mv "$file" "$cache/wheels/"
    done
    rmdir "$partial"
    found=$(compgen -G "$cache/wheels/$pattern" | head -n 1 || true)
    if [[ -z $found ]]; then
      echo "$0: pip downloaded $requirement but no $pattern appeared in $cache/wheels" >&2
      exit 1
    fi
  fi
  echo "$found"
}

# publish STAGING TARGET: marks STAGING complete and renames it to TARGET, so
# that an interrupted run leaves nothing half-made behind. Another run may
# have finished first; then its directory is as good as ours.
publish() {
  local staging=$1 target=$2
  touch "$staging/.complete"
  if ! mv -T "$staging" "$target" 2>/dev/null; then
    if [[ ! -f $target/.complete ]]; then
      rm -rf "$target"
      mv -T "$staging" "$target"
    else
      rm -rf "$staging"
    fi
  fi
}
