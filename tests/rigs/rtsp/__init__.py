"""A real RTSP server with healthy and faulty H.264 cameras: see rig.py and setup.sh."""
