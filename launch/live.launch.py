"""Live camera -> priordepth_node (+ optional camera driver and RViz).

    ros2 launch priordepth_ros live.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info
    ros2 launch priordepth_ros live.launch.py model:=runs/my_robot/model.pt    # a model from priordepth-train-bag
    ros2 launch priordepth_ros live.launch.py camera_driver:=v4l2_camera video_device:=/dev/video0 rviz:=true
    ros2 launch priordepth_ros live.launch.py image:=/cam/image_raw/compressed image_transport:=compressed

Every process started here uses config/fastdds_large_data.xml (larger Fast DDS shared-memory segment): with the
default 512 KiB segment, camera-sized images on best-effort topics are silently dropped. Start other nodes on the
same images (camera driver, RViz, recorders) with the same FASTRTPS_DEFAULT_PROFILES_FILE.
"""

from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "priordepth_ros"


def argument_is(name: str, value: str) -> IfCondition:
    """True when launch argument ``name`` equals ``value`` (works on Humble and Jazzy alike)."""
    return IfCondition(PythonExpression(["'", LaunchConfiguration(name), f"' == '{value}'"]))


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare(PACKAGE), "config"])
    image = LaunchConfiguration("image")
    camera_info = LaunchConfiguration("camera_info")
    driver_remappings = [("image_raw", image), ("camera_info", camera_info)]
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="camera image topic (sensor_msgs/Image, or CompressedImage with "
                                          "image_transport:=compressed)"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="the camera's sensor_msgs/CameraInfo topic"),
        DeclareLaunchArgument("image_transport", default_value="raw", choices=["raw", "compressed"],
                              description="type carried by the image topic"),
        DeclareLaunchArgument("model", default_value="",
                              description="the depth model: a packed model file (e.g. DIR/model.pt of "
                                          "priordepth-train-bag) or a shipped model's name (driving, indoor); "
                                          "'' = the default shipped model. Overrides params_file's checkpoint"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([config, "priordepth.yaml"]),
                              description="priordepth_node parameter file"),
        DeclareLaunchArgument("camera_driver", default_value="none", choices=["none", "v4l2_camera", "usb_cam"],
                              description="also start this camera driver, publishing on image and camera_info"),
        DeclareLaunchArgument("video_device", default_value="/dev/video0", description="camera driver's device"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with config/priordepth.rviz"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock time"),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE",
                               PathJoinSubstitution([config, "fastdds_large_data.xml"])),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                               PathJoinSubstitution([config, "fastdds_large_data.xml"])),
        Node(package="v4l2_camera", executable="v4l2_camera_node", name="camera",
             condition=argument_is("camera_driver", "v4l2_camera"),
             parameters=[{"video_device": LaunchConfiguration("video_device")}],
             remappings=driver_remappings),
        Node(package="usb_cam", executable="usb_cam_node_exe", name="camera",
             condition=argument_is("camera_driver", "usb_cam"),
             parameters=[{"video_device": LaunchConfiguration("video_device")}],
             remappings=driver_remappings),
        Node(package=PACKAGE, executable="priordepth_node", name="priordepth", output="screen",
             parameters=[LaunchConfiguration("params_file"),
                         {"image_transport": LaunchConfiguration("image_transport"),
                          "checkpoint": LaunchConfiguration("model"),
                          "use_sim_time": LaunchConfiguration("use_sim_time")}],
             remappings=[("image", image), ("camera_info", camera_info)]),
        Node(package="rviz2", executable="rviz2", name="rviz2", condition=IfCondition(LaunchConfiguration("rviz")),
             arguments=["-d", PathJoinSubstitution([config, "priordepth.rviz"])],
             parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}]),
    ])
