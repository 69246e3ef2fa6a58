"""The ROS package's files, checked without a ROS installation (``launch`` is not installable here): launch files
(parsed, not run), the parameter file, the RViz config, package.xml and the install rules in setup.py.

Every executable a launch file starts, every parameter file and parameter it names, every topic it remaps and
every file it points to must exist in the package; every topic the RViz config shows must be one the node (or a
converted bag) publishes, with a display of the right type.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import yaml

from priordepth_ros import topics
from priordepth_ros.parameters import check_value, parameter_specs

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((REPO_ROOT / "launch").glob("*.launch.py"))
CONFIG = REPO_ROOT / "config"
# Parameters every ROS 2 node has besides its own.
STANDARD_PARAMETERS = {"use_sim_time"}
RVIZ_DISPLAY_TYPES = {
    "rviz_default_plugins/Image": "sensor_msgs/msg/Image",
    "rviz_default_plugins/PointCloud2": "sensor_msgs/msg/PointCloud2",
    "rviz_default_plugins/Odometry": "nav_msgs/msg/Odometry",
    "rviz_default_plugins/Path": "nav_msgs/msg/Path",
}


def exec_depends() -> set[str]:
    root = ElementTree.parse(REPO_ROOT / "package.xml").getroot()
    return {element.text.strip() for element in root.iter("exec_depend")}


def console_scripts() -> set[str]:
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return {element.value.split("=")[0].strip() for element in value.elts}
    raise AssertionError("setup.py declares no console_scripts")


def flatten(parameters: dict, prefix: str = "") -> dict:
    """Nested YAML groups -> dotted ROS parameter names."""
    flat = {}
    for key, value in parameters.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def calls(tree: ast.AST, function: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == function]


def constant(expression: ast.expr | None, module_constants: dict[str, str]):
    """A string literal, or a module-level string constant by name; None for substitutions."""
    if isinstance(expression, ast.Constant):
        return expression.value
    if isinstance(expression, ast.Name):
        return module_constants.get(expression.id)
    return None


@pytest.fixture(params=LAUNCH_FILES, ids=[path.name for path in LAUNCH_FILES])
def launch_file(request) -> tuple[Path, ast.Module, dict[str, str]]:
    tree = ast.parse(request.param.read_text(), filename=str(request.param))
    module_constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                        for target in node.targets if isinstance(node.value, ast.Constant)}
    return request.param, tree, module_constants


def test_both_launch_files_exist_and_define_a_launch_description():
    assert [path.name for path in LAUNCH_FILES] == ["live.launch.py", "replay.launch.py"]
    for path in LAUNCH_FILES:
        tree = ast.parse(path.read_text())
        assert any(isinstance(node, ast.FunctionDef) and node.name == "generate_launch_description"
                   for node in tree.body), path


def test_launch_nodes_name_existing_executables_parameters_and_topics(launch_file):
    path, tree, module_constants = launch_file
    specs = parameter_specs()
    nodes = calls(tree, "Node")
    ours = [n for n in nodes if constant(keyword(n, "package"), module_constants) == topics.PACKAGE]
    assert len(ours) == 1, f"{path.name} must start priordepth_node exactly once"
    for node in nodes:
        package = constant(keyword(node, "package"), module_constants)
        executable = constant(keyword(node, "executable"), module_constants)
        assert package and executable, f"{path.name}: a Node without literal package/executable"
        if package == topics.PACKAGE:
            assert executable == topics.EXECUTABLE and executable in console_scripts()
            # RViz and the README name the outputs /priordepth/...: the launch file must keep that name.
            assert constant(keyword(node, "name"), module_constants) == topics.NODE_NAME
            for parameter_source in keyword(node, "parameters").elts:
                if isinstance(parameter_source, ast.Dict):
                    for key in parameter_source.keys:
                        assert key.value in specs or key.value in STANDARD_PARAMETERS, \
                            f"{path.name}: parameter {key.value!r} is not declared by the node"
            remapped = [constant(pair.elts[0], module_constants) for pair in keyword(node, "remappings").elts]
            assert sorted(remapped) == sorted(topics.INPUT_TYPES), f"{path.name}: remaps {remapped}"
        else:
            assert package in exec_depends(), f"{path.name}: package {package!r} is not an exec_depend"


def test_launch_arguments_are_declared_and_files_exist(launch_file):
    path, tree, _ = launch_file
    declared = {call.args[0].value for call in calls(tree, "DeclareLaunchArgument")}
    used = {call.args[0].value for call in calls(tree, "LaunchConfiguration") if isinstance(call.args[0], ast.Constant)}
    used |= {call.args[0].value for call in calls(tree, "argument_is")}
    assert used <= declared, f"{path.name}: undeclared launch arguments {used - declared}"
    for call in calls(tree, "DeclareLaunchArgument"):
        description = keyword(call, "description")
        assert isinstance(description, ast.Constant) and description.value, f"{call.args[0].value} undocumented"
    files = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and re.fullmatch(r"[\w.]+\.(yaml|xml|rviz)", node.value)}
    assert {"priordepth.yaml", "fastdds_large_data.xml"} <= files
    for name in files:
        assert (CONFIG / name).is_file(), f"{path.name} points to config/{name}, which does not exist"
    setup = (REPO_ROOT / "setup.py").read_text()
    for pattern in ('"launch/*.launch.py"', '"config/*.yaml"', '"config/*.xml"', '"config/*.rviz"'):
        assert pattern in setup, f"setup.py does not install {pattern}"
    environment = {call.args[0].value for call in calls(tree, "SetEnvironmentVariable")}
    assert environment == {"FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE"}


def test_replay_defaults_match_the_converted_bags_and_rosbag_tools_accepts_the_play_command():
    from rosbag_tools.__main__ import build_parser
    from rosbag_tools.bag_writer import TopicNames

    tree = ast.parse((REPO_ROOT / "launch" / "replay.launch.py").read_text())
    defaults = {call.args[0].value: keyword(call, "default_value").value
                for call in calls(tree, "DeclareLaunchArgument")
                if isinstance(keyword(call, "default_value"), ast.Constant)}
    assert defaults["image"] == TopicNames().image and defaults["camera_info"] == TopicNames().camera_info
    commands = [keyword(call, "cmd") for call in calls(tree, "ExecuteProcess")]
    assert len(commands) == 2
    for command in commands:
        # Substitutions become placeholder values; the literal flags must be ones the player accepts.
        argv = [element.value if isinstance(element, ast.Constant) else "1.0" for element in command.elts]
        if argv[:2] == ["ros2", "bag"]:
            assert "ros2bag" in exec_depends() and "rosbag2_storage_mcap" in exec_depends()
            assert argv[2] == "play" and "--clock" in argv
        else:
            assert argv[:4] == ["python3", "-m", "rosbag_tools", "play"]
            arguments = build_parser().parse_args(argv[3:])
            assert arguments.clock and arguments.wait_for == ["1.0"] and arguments.delay == 1.0


def test_parameter_file_declares_every_parameter_with_its_default():
    from priordepth_ros.parameter_file import render_parameter_file

    assert yaml.safe_load(render_parameter_file()) == yaml.safe_load((CONFIG / "priordepth.yaml").read_text())
    document = yaml.safe_load((CONFIG / "priordepth.yaml").read_text())
    assert list(document) == ["/**"] and list(document["/**"]) == ["ros__parameters"]
    values = flatten(document["/**"]["ros__parameters"])
    specs = parameter_specs()
    regenerate = "regenerate it: python -m priordepth_ros.parameter_file > config/priordepth.yaml"
    assert set(values) == set(specs), f"{set(values) ^ set(specs)} differ; {regenerate}"
    for name, value in values.items():
        # rclpy refuses an integer for a double parameter: floats must be written as floats.
        assert type(value) is type(specs[name].default), f"{name}: {value!r}"
        assert check_value(specs[name], value) == specs[name].default, f"{name}: {value!r} is not the default; " \
            + regenerate


def rviz_displays(displays: list) -> list[dict]:
    """Every display, groups flattened."""
    out = []
    for display in displays:
        out.append(display)
        out.extend(rviz_displays(display.get("Displays", [])))
    return out


def test_rviz_config_shows_topics_that_exist_with_matching_displays():
    from rosbag_tools.bag_writer import TopicNames

    config = yaml.safe_load((CONFIG / "priordepth.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == parameter_specs()["odom_frame"].default
    published = {topics.resolve(name): kind for name, kind in topics.OUTPUT_TYPES.items()}
    bag_topics = {TopicNames().odometry: "nav_msgs/msg/Odometry", TopicNames().depth: "sensor_msgs/msg/Image"}
    shown = {}
    for display in rviz_displays(manager["Displays"]):
        topic = display.get("Topic")
        if topic is None:
            continue
        name = topic["Value"] if isinstance(topic, dict) else topic
        kind = published.get(name) or bag_topics.get(name)
        assert kind, f"RViz shows {name!r}, which neither the node nor a converted bag publishes"
        assert RVIZ_DISPLAY_TYPES[display["Class"]] == kind, f"{display['Class']} cannot show {kind} ({name})"
        if isinstance(topic, dict) and name in published:
            assert topic["Reliability Policy"] == "Reliable"  # the node publishes reliable; either would match
        shown[name] = display
    expected = {"/priordepth/depth", "/priordepth/depth/colored", "/priordepth/matches", "/priordepth/keypoints",
                "/priordepth/odometry", "/priordepth/path"}
    assert expected <= set(shown)
    assert shown["/priordepth/keypoints"]["Channel Name"] == "score"  # a field of the node's cloud
    assert any(display["Class"] == "rviz_default_plugins/TF" for display in manager["Displays"])


def test_package_xml_declares_what_the_node_imports():
    depends = exec_depends()
    assert {"rclpy", "sensor_msgs", "nav_msgs", "geometry_msgs", "tf2_msgs", "visualization_msgs",
            "diagnostic_msgs", "std_srvs", "launch", "launch_ros", "rviz2"} <= depends
    imported = set()
    for source in (REPO_ROOT / "priordepth_ros").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
    ros_packages = {name for name in imported if name == "rclpy" or re.search(r"_(msgs|srvs|interfaces)$", name)}
    assert ros_packages and ros_packages <= depends, ros_packages - depends
    root = ElementTree.parse(REPO_ROOT / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == topics.PACKAGE
    assert root.find("export").findtext("build_type") == "ament_python"
    assert (REPO_ROOT / "resource" / topics.PACKAGE).is_file()


def test_fastdds_profile_enlarges_the_shared_memory_segment():
    namespace = {"dds": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    root = ElementTree.parse(CONFIG / "fastdds_large_data.xml").getroot()
    descriptors = {d.findtext("dds:transport_id", namespaces=namespace): d
                   for d in root.iterfind(".//dds:transport_descriptor", namespace)}
    shm = [d for d in descriptors.values() if d.findtext("dds:type", namespaces=namespace) == "SHM"]
    assert len(shm) == 1
    segment = int(shm[0].findtext("dds:segment_size", namespaces=namespace))
    depth_720p = 1280 * 720 * 4  # the largest message the node sends at 1280x720
    assert segment >= 8 * depth_720p
    participant = root.find(".//dds:participant", namespace)
    assert participant.get("is_default_profile") == "true"
    used = [element.text for element in participant.iterfind(".//dds:userTransports/dds:transport_id", namespace)]
    assert set(used) == set(descriptors)
    assert participant.findtext(".//dds:useBuiltinTransports", namespaces=namespace) == "false"
