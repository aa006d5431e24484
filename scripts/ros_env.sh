# Source me (bash): `source scripts/ros_env.sh` — the environment for running sgn_ros under ROS 2.
#
# * ROS 2 from PyPI wheels in the project venv (.venv): the venv is the ament prefix
#   (AMENT_PREFIX_PATH), its python first on PATH.
#   With a regular ROS 2 installation, source /opt/ros/<distro>/setup.bash first and set
#   SGN_ROS_USE_SYSTEM_ROS=1 (or have no .venv).
# * install/setup.bash of `make ros-build` (scripts/build_ros.sh): sgn_ros.msg and the type support
#   libraries (LD_LIBRARY_PATH).
# * PYTHONPATH starts with the repository root, so the sources win over the install tree's copy;
#   sgn_ros/__init__.py extends its __path__, so sgn_ros.msg is still found in the install tree.
# * Fast DDS: the project profile (config/fastdds_profile.xml: fast discovery, a 32 MiB shared-memory
#   segment so that multi-megabyte images and outputs pass as one sample, ~5 ms for 4 MB instead of
#   13-50 ms), discovery limited to this machine. Values already set in the environment are kept.
_sgn_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
_sgn_venv="${VENV:-$_sgn_root/.venv}"
if [ "${SGN_ROS_USE_SYSTEM_ROS:-0}" != "1" ] && [ -x "$_sgn_venv/bin/python" ]; then
  export VIRTUAL_ENV="$_sgn_venv"
  case ":$PATH:" in *":$_sgn_venv/bin:"*) ;; *) export PATH="$_sgn_venv/bin:$PATH" ;; esac
  case ":${AMENT_PREFIX_PATH:-}:" in
    *":$_sgn_venv:"*) ;;
    *) export AMENT_PREFIX_PATH="$_sgn_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
  esac
fi
if [ -f "$_sgn_root/install/setup.bash" ]; then
  # shellcheck disable=SC1091
  . "$_sgn_root/install/setup.bash"
else
  echo "ros_env.sh: $_sgn_root/install/setup.bash not found: run 'make ros-build' (sgn_ros.msg unavailable)" >&2
fi
case ":${PYTHONPATH:-}:" in
  ":$_sgn_root:"*) ;;
  *) export PYTHONPATH="$_sgn_root${PYTHONPATH:+:$PYTHONPATH}" ;;
esac
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_sgn_root/config/fastdds_profile.xml}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
unset _sgn_root _sgn_venv
