"""Quality-of-service profiles of the node's topics, in one place.

- Camera inputs: sensor-data QoS (best effort, keep last 5, volatile) as camera drivers publish; a best-effort
  subscription also matches reliable publishers (``ros2 bag play``, ``rosbag_tools play``).
- Outputs: reliable, keep last 5, volatile: RViz and recorders get every frame they can keep up with, and a slow
  subscriber never makes the node queue more than five messages per topic.
- TF: exactly tf2_ros' broadcaster profiles (``DynamicBroadcasterQoS``: reliable, keep last 100;
  ``StaticBroadcasterQoS``: reliable, transient local, keep last 1), so tf2 listeners match without tf2_ros here.
- Diagnostics: reliable, keep last 10 (diagnostic_aggregator subscribes reliable).
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

SENSOR_INPUT = qos_profile_sensor_data

OUTPUT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)

TF = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.VOLATILE)

TF_STATIC = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL)

DIAGNOSTICS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
