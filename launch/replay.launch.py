"""A rosbag2 replayed into priordepth_node, with RViz.

    ros2 launch priordepth_ros replay.launch.py bag:=fr1_xyz
    ros2 launch priordepth_ros replay.launch.py bag:=drive_0001 rate:=0.5 rviz:=false
    ros2 launch priordepth_ros replay.launch.py bag:=my_robot model:=runs/my_robot/model.pt
    ros2 launch priordepth_ros replay.launch.py bag:=fr1_xyz player:=rosbag_tools   # without ros2 bag

Bags written by `python -m rosbag_tools kitti2bag|tum2bag|synth2bag` carry /camera/image and /camera/camera_info (the
defaults here) and the ground truth on /tf (world -> gt_camera) and /ground_truth/odometry, which RViz can show beside
the estimate. The player publishes /clock and every node uses it (use_sim_time), so TF lookups match the bag's
stamps. All processes use config/fastdds_large_data.xml (see live.launch.py).
"""

from launch.actions import DeclareLaunchArgument, ExecuteProcess, SetEnvironmentVariable
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
    bag = LaunchConfiguration("bag")
    rate = LaunchConfiguration("rate")
    image = LaunchConfiguration("image")
    camera_info = LaunchConfiguration("camera_info")
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder (or .mcap/.db3 file) to play"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
        DeclareLaunchArgument("player", default_value="ros2bag", choices=["ros2bag", "rosbag_tools"],
                              description="`ros2 bag play`, or `python -m rosbag_tools play` where ros2 bag is "
                                          "not installed"),
        DeclareLaunchArgument("image", default_value="/camera/image", description="image topic in the bag"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="CameraInfo topic in the bag"),
        DeclareLaunchArgument("model", default_value="",
                              description="the depth model: a packed model file (e.g. DIR/model.pt of "
                                          "priordepth-train-bag) or a shipped model's name (driving, indoor); "
                                          "'' = the default shipped model. Overrides params_file's checkpoint"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([config, "priordepth.yaml"]),
                              description="priordepth_node parameter file"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz with config/priordepth.rviz"),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE",
                               PathJoinSubstitution([config, "fastdds_large_data.xml"])),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                               PathJoinSubstitution([config, "fastdds_large_data.xml"])),
        Node(package=PACKAGE, executable="priordepth_node", name="priordepth", output="screen",
             parameters=[LaunchConfiguration("params_file"),
                         {"use_sim_time": True, "checkpoint": LaunchConfiguration("model")}],
             remappings=[("image", image), ("camera_info", camera_info)]),
        # The node needs a moment to load the model; --wait-for / --delay keep the first frames from going nowhere.
        ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--rate", rate, "--clock", "--delay", "3.0"],
                       output="screen", condition=argument_is("player", "ros2bag")),
        ExecuteProcess(cmd=["python3", "-m", "rosbag_tools", "play", bag, "--rate", rate, "--clock",
                            "--wait-for", image, "--delay", "1.0"],
                       output="screen", condition=argument_is("player", "rosbag_tools")),
        Node(package="rviz2", executable="rviz2", name="rviz2", condition=IfCondition(LaunchConfiguration("rviz")),
             arguments=["-d", PathJoinSubstitution([config, "priordepth.rviz"])],
             parameters=[{"use_sim_time": True}]),
    ])
