# ROS 2 side of sgn_ros: the inference node (node.py), message decoders / encoders (decoders.py,
# encoders.py), the staged frame pipeline (pipeline.py), QoS helpers (qos.py) and the replay tools
# (kitti_player, bag_player, kitti_to_bag, demo).
"""ROS 2 nodes and message decoders / encoders of sgn_ros (rclpy is imported only by the node modules)."""
