# Placeholder: replaced by the ROS issue (sources the colcon install tree).
export AMENT_PREFIX_PATH="${VIRTUAL_ENV:-$(pwd)/.venv}"
