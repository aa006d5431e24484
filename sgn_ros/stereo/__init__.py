# Stereo depth on any device: disparity networks (MobileStereoNet, the depth the released SGN
# checkpoints were trained on) and classical matchers written in torch, so that depth for the
# network is computed where the network runs. The OpenCV StereoSGBM path stays in
# sgn_ros.data.stereo for CPU-only use; pair.py chooses among the three for the predictor.
"""Stereo disparity and depth on the network's device."""
