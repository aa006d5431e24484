"""sgn_ros: camera-based semantic scene completion (SGN) for ROS 2 and PyTorch.

Kept import-light on purpose: the ROS message package of the same name imports
this module, so nothing heavy (torch, rclpy) is imported here.
"""

__version__ = "0.1.0"
__path__ = __import__('pkgutil').extend_path(__path__, __name__)  # noqa: F821  sgn_ros.msg lives in the colcon install tree
