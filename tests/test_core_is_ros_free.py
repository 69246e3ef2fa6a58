"""priordepth_core must import without ROS: every module is imported with the ROS packages (and rosbag_tools, which
sits above the core) made unimportable. tests/test_layers.py checks the same statically, function bodies included."""

import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys

    ROS_TOP_LEVEL = {"rclpy", "rosidl_runtime_py", "rosidl_parser", "rpyutils", "sensor_msgs", "nav_msgs",
                     "geometry_msgs", "std_msgs", "tf2_msgs", "tf2_ros", "visualization_msgs", "diagnostic_msgs",
                     "builtin_interfaces", "launch", "launch_ros", "cv_bridge", "message_filters", "priordepth_ros",
                     "rosbag_tools"}

    class BlockRos(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ROS_TOP_LEVEL:
                raise ImportError(f"{name} (ROS, or a package above the core) imported by the ROS-free core")
            return None

    sys.meta_path.insert(0, BlockRos())
    import priordepth_core
    names = [m.name for m in pkgutil.walk_packages(priordepth_core.__path__, "priordepth_core.")]
    for name in names:
        importlib.import_module(name)
    print(len(names))
    """
)


def test_every_core_module_imports_without_ros():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip().splitlines()[-1]) >= 8  # geometry alone has 8 modules
