"""The node's ROS interface by name: node name, topics with their message types, service, TF topics.

Kept free of rclpy so that the launch-file and RViz-config checks can read it without a ROS installation.
Private names (``~/...``) resolve under the node's name: ``~/depth`` of node ``priordepth`` is ``/priordepth/depth``.
"""

from __future__ import annotations

NODE_NAME = "priordepth"
EXECUTABLE = "priordepth_node"
PACKAGE = "priordepth_ros"

# Inputs (remap them onto the camera's topics). With image_transport "compressed", IMAGE carries CompressedImage.
IMAGE = "image"
CAMERA_INFO = "camera_info"
INPUT_TYPES = {
    IMAGE: ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
    CAMERA_INFO: ("sensor_msgs/msg/CameraInfo",),
}

DEPTH = "~/depth"
DEPTH_CAMERA_INFO = "~/depth/camera_info"
DEPTH_COLORED = "~/depth/colored"
MATCHES = "~/matches"
KEYPOINTS = "~/keypoints"
ODOMETRY = "~/odometry"
PATH = "~/path"
TF = "/tf"
TF_STATIC = "/tf_static"
DIAGNOSTICS = "/diagnostics"
OUTPUT_TYPES = {
    DEPTH: "sensor_msgs/msg/Image",
    DEPTH_CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
    DEPTH_COLORED: "sensor_msgs/msg/Image",
    MATCHES: "sensor_msgs/msg/Image",
    KEYPOINTS: "sensor_msgs/msg/PointCloud2",
    ODOMETRY: "nav_msgs/msg/Odometry",
    PATH: "nav_msgs/msg/Path",
    TF: "tf2_msgs/msg/TFMessage",
    TF_STATIC: "tf2_msgs/msg/TFMessage",
    DIAGNOSTICS: "diagnostic_msgs/msg/DiagnosticArray",
}

RESET_SERVICE = "~/reset"  # std_srvs/srv/Trigger


def resolve(name: str, node_name: str = NODE_NAME, namespace: str = "/") -> str:
    """Fully qualified name of a topic or service as the node ``namespace/node_name`` sees it."""
    namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if name.startswith("~/"):
        return f"{namespace}/{node_name}/{name[2:]}"
    if name.startswith("/"):
        return name
    return f"{namespace}/{name}"
