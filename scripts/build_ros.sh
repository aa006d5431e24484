#!/usr/bin/env bash
# Placeholder: replaced by the ROS issue (colcon build of the messages).
exit 0
