"""Dataset <-> rosbag2 tools without a ROS installation (``rosbags`` + ``rosbags-image``), and rclpy replay.

- :mod:`.sources`: KITTI raw / odometry, TUM RGB-D and synthetic sequences, through the core's readers.
- :mod:`.bag_writer`: a sequence -> rosbag2 (mcap or sqlite3) with images, CameraInfo, ground-truth depth and poses.
- :mod:`.bag_to_frames`: any rosbag2 camera -> a TUM-layout training sequence.
- :mod:`.bag_info`, :mod:`.play`: summaries and replay with rclpy.

Command line: ``python -m rosbag_tools <command> --help``.
"""
