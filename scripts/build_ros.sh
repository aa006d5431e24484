#!/usr/bin/env bash
# Build the sgn_ros ROS 2 package (messages of msg/ + the Python package) with colcon into
# build/ and install/ at the repository root. Idempotent, and a fast no-op when nothing that
# the build consumes changed since the last successful build.
#
# Two set-ups are supported:
#   * ROS 2 from PyPI wheels in the project venv (.venv, what `make venv` creates): the venv is
#     the ament prefix. The wheels' exported CMake files hard-code the wheel builder's Python
#     include directories (/opt/python/cpXY-cpXY/...); they are rewritten once to this
#     interpreter's include directory and numpy's (marker file in the venv).
#   * A regular ROS 2 installation (Humble / Jazzy / Kilted): source /opt/ros/<distro>/setup.bash
#     first and set SGN_ROS_USE_SYSTEM_ROS=1 (or have no .venv); nothing is rewritten.
#
# Usage: bash scripts/build_ros.sh [--force]   (env VENV=path overrides the venv location)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { echo "[build_ros] $*" >&2; }

use_venv=1
if [[ "${SGN_ROS_USE_SYSTEM_ROS:-0}" == "1" || ! -x "$VENV/bin/python" ]]; then
  use_venv=0
fi

if [[ $use_venv == 1 ]]; then
  PY="$VENV/bin/python"
  if [[ ! -d "$VENV/share/ament_cmake" ]]; then
    log "ERROR: $VENV has no ament_cmake (install requirements/ros.txt into the venv, or set SGN_ROS_USE_SYSTEM_ROS=1)"
    exit 1
  fi
  export VIRTUAL_ENV="$VENV"
  export PATH="$VENV/bin:$PATH"
  export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"

  # --- one-time rewrite of the wheels' hard-coded Python include directories -------------
  PY_INC="$("$PY" -c 'import os, sysconfig; print(os.path.realpath(sysconfig.get_paths()["include"]))')"
  NP_INC="$("$PY" -c 'import os, numpy; print(os.path.realpath(numpy.get_include()))')"
  MARKER="$VENV/.sgn_ros_cmake_include_rewrite"
  WANT="$PY_INC;$NP_INC"
  # Also when wheels installed after the last rewrite still name the wheel builder's paths.
  if [[ ! -f "$MARKER" || "$(cat "$MARKER")" != "$WANT" ]] \
     || grep -rqE --include='*.cmake' '/opt/python/cp[0-9]+' "$VENV/share" 2>/dev/null; then
    log "rewriting Python include paths in $VENV/share/**/*.cmake -> $PY_INC, $NP_INC"
    sed_args=(
      -e "s#/opt/python/cp[0-9]+-cp[0-9]+t?/lib/python[0-9.]+t?/site-packages/numpy/(_core|core)/include#${NP_INC}#g"
      -e "s#/opt/python/cp[0-9]+-cp[0-9]+t?/include/python[0-9.]+t?#${PY_INC}#g"
    )
    pattern='/opt/python/cp[0-9]+'
    if [[ -f "$MARKER" ]]; then  # an earlier rewrite for another interpreter / venv location
      IFS=';' read -r OLD_PY OLD_NP < "$MARKER"
      sed_args+=(-e "s#${OLD_NP}#${NP_INC}#g" -e "s#${OLD_PY}#${PY_INC}#g")
      pattern="$pattern|$OLD_NP|$OLD_PY"
    fi
    # only files that still mention a path to replace are touched (grep finds none: nothing to do)
    { grep -rlZ --include='*.cmake' -E "$pattern" "$VENV/share" 2>/dev/null || true; } \
      | xargs -0 -r sed -i -E "${sed_args[@]}"
    if grep -rq --include='*.cmake' -E '/opt/python/cp[0-9]+' "$VENV/share" 2>/dev/null; then
      log "ERROR: some /opt/python paths remain in $VENV/share (unexpected layout):"
      grep -rn --include='*.cmake' -E '/opt/python/cp[0-9]+' "$VENV/share" | head -5 >&2
      exit 1
    fi
    echo "$WANT" > "$MARKER"
  fi
else
  PY="$(command -v python3)"
  if [[ -z "${AMENT_PREFIX_PATH:-}" ]]; then
    log "ERROR: no ROS 2 environment: source /opt/ros/<distro>/setup.bash first"
    exit 1
  fi
fi

if ! command -v colcon >/dev/null; then
  log "ERROR: colcon not found (venv: pip install colcon-core colcon-ros colcon-bash; ROS: apt install python3-colcon-common-extensions)"
  exit 1
fi

# --- tf2_msgs: no wheel exists; the wheel set-up builds a minimal one (ros_deps/tf2_msgs) ---------
# Only there, and only when the environment has none: a ROS 2 installation's tf2_msgs (or a
# future wheel) is never shadowed.
BASE_PATHS=("$ROOT")
if [[ $use_venv == 1 && ! -f "$VENV/share/tf2_msgs/package.xml" ]]; then
  BASE_PATHS+=("$ROOT/ros_deps")
fi

# --- fast no-op: fingerprint of everything the build consumes ---------------------------------
fingerprint() {
  {
    echo "$PY" "$use_venv" "${BASE_PATHS[*]}"
    find package.xml CMakeLists.txt msg config launch sgn_ros ros_deps \
         scripts/sgn_node scripts/kitti_player scripts/bag_player \
         -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 2>/dev/null \
      | sort -z | xargs -0 sha1sum
  } | sha1sum | cut -d' ' -f1
}
STAMP="$ROOT/install/.sgn_ros_build_stamp"
FP="$(fingerprint)"
if [[ $FORCE == 0 && -f "$STAMP" && "$(cat "$STAMP")" == "$FP" && -f install/setup.bash ]]; then
  log "up to date (install/)"
  exit 0
fi

log "colcon build (python: $PY)"
rm -f "$STAMP"
mkdir -p "$ROOT/log"
colcon --log-base "$ROOT/log" build \
  --base-paths "${BASE_PATHS[@]}" \
  --build-base "$ROOT/build" \
  --install-base "$ROOT/install" \
  --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF \
  >"$ROOT/log/build_ros.last.txt" 2>&1 || {
    log "ERROR: colcon build failed; output follows (also in log/build_ros.last.txt)"
    tail -n 60 "$ROOT/log/build_ros.last.txt" >&2
    exit 1
  }
echo "$FP" > "$STAMP"
log "built into install/ (source scripts/ros_env.sh to use it)"
