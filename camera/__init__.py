"""The camera service: one reader per camera, picture health, tiles, status.

OpenCV's FFmpeg backend runs VideoCapture opens one at a time in a process unless
OPENCV_FFMPEG_IS_THREAD_SAFE is set (it reads the flag once, at the first open). Measured
here: one camera hanging in its open then held every other open up for its whole open
timeout, and 4 opens took 8.0 s one after another against 2.0 s together. FFmpeg's own
open is safe to run in parallel, so the package sets the flag before anything opens
(an administrator's own setting wins). The service itself now reads streams with PyAV
(camera/capture.py), which takes its options per open; the flag stays for what still opens
streams through OpenCV in this process (the RTSP rig's tests compare the two).
"""

import os

os.environ.setdefault("OPENCV_FFMPEG_IS_THREAD_SAFE", "1")
