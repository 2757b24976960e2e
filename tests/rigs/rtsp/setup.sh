#!/usr/bin/env bash
# Prepares the RTSP camera rig: Debian packages, the source footage, the test media.
#
#   bash tests/rigs/rtsp/setup.sh          (as root, or with sudo available)
#
# Idempotent: installs only missing packages (by name, `apt-get update` once first),
# fetches vtest.avi only if it is not cached, encodes only the media that are missing
# or were made by an older recipe.  Everything lands in $IOC_TEST_MEDIA_DIR
# (default /var/cache/ioc-test-media), readable by any user; tests/rigs/rtsp/rig.py
# reads the same variable.  Kept well under 200 MB.
#
# Packages, and why each is needed (nothing else is):
#   gir1.2-gst-rtsp-server-1.0  GstRtspServer for /usr/bin/python3; pulls libgstrtspserver,
#                               which itself depends on gstreamer1.0-plugins-{base,good,bad}
#   gstreamer1.0-plugins-base   appsrc/appsink (the server's fan-out), typelibs
#   gstreamer1.0-plugins-good   qtdemux (reads the .mp4), rtph264pay, rtpbin, udp
#   python3-gi                  gi for Debian's /usr/bin/python3
#   ffmpeg                      libx264 encodes the test media
# Not needed: gstreamer1.0-rtsp (rtspsrc / rtspclientsink, client side), -plugins-ugly
# (x264enc: we encode with ffmpeg), gstreamer1.0-libav (the server never decodes).
#
# Media (all H.264 main profile, yuv420p, 25 fps, IDR every 25 frames, closed GOP, no
# B-frames, no audio, ~60 s, faststart mp4):
#   street-1080p.mp4 street-720p.mp4 street-360p.mp4   pedestrians (vtest.avi), 4:3 scaled
#       to full height and pillarboxed to 16:9, 10 -> 25 fps by frame blending, played
#       forward 30 s then backward ~30 s so the loop is seamless (no scene cut at the seam)
#   black-360p.mp4      pure black
#   frozen-360p.mp4     3 s (75 frames) of street, then its last frame repeated to 60 s
#   blurred-360p.mp4    street-360p with a gaussian blur, sigma 10
#   counter-1080p.mp4 counter-360p.mp4   street with the frame index burnt in, see counter.py:
#       a 512x64 px patch at the top-left corner: row 0 (y 0..31) holds 16 blocks of
#       32x32 px, bit 15 (MSB) at x 0..31 ... bit 0 at x 480..511, white = 1, black = 0;
#       row 1 (y 32..63) holds the complement (white = 0), so a decoder can verify it.
#       The index is the frame number within the file (0 .. frames-1), wrapping at the loop.
set -euo pipefail

MEDIA_VERSION=3       # bump when a recipe below changes: stale media are re-made
MEDIA_DIR="${IOC_TEST_MEDIA_DIR:-/var/cache/ioc-test-media}"
PACKAGES=(gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good python3-gi ffmpeg)

log() { printf '[rtsp-setup] %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { log "run me as root (or install sudo)"; exit 1; }
  SUDO="sudo"
fi

# -- packages -----------------------------------------------------------------------
updated=0
apt_update_once() {
  if [ "$updated" -eq 0 ]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    updated=1
  fi
}
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt_update_once
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "packages present: ${PACKAGES[*]}"
fi
/usr/bin/python3 - <<'EOF' || { log "GstRtspServer is not usable from /usr/bin/python3"; exit 1; }
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: F401
Gst.init(None)
missing = [e for e in ("appsrc", "appsink", "qtdemux", "rtph264pay", "rtpbin") if Gst.ElementFactory.find(e) is None]
raise SystemExit(f"missing GStreamer elements: {missing}" if missing else 0)
EOF

# -- cache directory ----------------------------------------------------------------
$SUDO mkdir -p "$MEDIA_DIR/source"
$SUDO chmod 0755 "$MEDIA_DIR" "$MEDIA_DIR/source"
if [ -n "$SUDO" ]; then $SUDO chown -R "$(id -u):$(id -g)" "$MEDIA_DIR"; fi

# -- source footage: vtest.avi from Debian's opencv-doc, without installing it -------
SRC="$MEDIA_DIR/source/vtest.avi"
if [ ! -s "$SRC" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  chmod 0777 "$work"        # apt-get download runs as _apt where it can
  log "fetching opencv-doc (~96 MB download, only vtest.avi is kept)"
  if ! (cd "$work" && apt-get download -qq opencv-doc 2>/dev/null); then
    apt_update_once
    (cd "$work" && apt-get download -qq opencv-doc)
  fi
  deb="$(ls "$work"/opencv-doc_*.deb)"
  member="./usr/share/doc/opencv-doc/examples/data/vtest.avi"
  # dpkg -x extracts the whole 96 MB tree; extracting the one member is the same thing, smaller
  mkdir -p "$work/x"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/x" "$member"
  cp "$work/x/$member" "$SRC.tmp" && mv "$SRC.tmp" "$SRC"
  rm -rf "$work"
  trap - EXIT
  log "cached $SRC ($(du -h "$SRC" | cut -f1))"
else
  log "source present: $SRC"
fi

# -- encoding -----------------------------------------------------------------------
STAMP="$MEDIA_DIR/MEDIA_VERSION"
have_version="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$have_version" != "$MEDIA_VERSION" ]; then
  log "media recipe v$MEDIA_VERSION (cache has '${have_version:-none}'): re-making every file"
  rm -f "$MEDIA_DIR"/*.mp4 "$STAMP"
fi

FF=(ffmpeg -nostdin -hide_banner -loglevel error -y)
# Camera-like H.264: main profile, no B-frames, IDR exactly every 25 frames (1 s), capped bitrate.
enc() {  # enc MAXRATE -> encoder args
  echo -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p -r 25 \
    -g 25 -keyint_min 25 -sc_threshold 0 -bf 0 -x264-params open_gop=0:scenecut=0 \
    -crf 23 -maxrate "$1" -bufsize "$1" -an -movflags +faststart
}
fit() {  # fit W H -> scale 4:3 to height H and pillarbox to W x H
  local w=$1 h=$2 iw=$(( $2 * 4 / 3 ))
  echo "scale=${iw}:${h}:flags=bicubic,pad=${w}:${h}:$(( (w - iw) / 2 )):0:black,setsar=1"
}
counter_filter() {  # the frame index as 16 bits + complement, see the header
  local f="drawbox=x=0:y=0:w=512:h=64:color=black:t=fill" b x bit
  for b in $(seq 0 15); do
    bit=$(( 1 << (15 - b) )); x=$(( b * 32 ))
    f+=",drawbox=x=${x}:y=0:w=32:h=32:color=white:t=fill:enable='eq(mod(floor(n/${bit}),2),1)'"
    f+=",drawbox=x=${x}:y=32:w=32:h=32:color=white:t=fill:enable='eq(mod(floor(n/${bit}),2),0)'"
  done
  echo "$f"
}

MASTER=""
master() {  # a 768x576 25 fps near-lossless master, made once per run when something is encoded
  if [ -z "$MASTER" ]; then
    MASTER="$(mktemp -d)/master.mkv"
    log "making the 25 fps master (forward 30 s + backward, blended from 10 fps)"
    # frames 0..299 forward, then 298..1 backward: a loop of 598 source frames with no cut
    "${FF[@]}" -i "$SRC" -filter_complex \
      "[0:v]trim=end_frame=300,setpts=PTS-STARTPTS,split[f][b];[b]trim=start_frame=1:end_frame=299,setpts=PTS-STARTPTS,reverse[r];[f][r]concat=n=2:v=1:a=0,setpts=N/10/TB,framerate=fps=25[v]" \
      -map "[v]" -c:v libx264 -preset veryfast -crf 10 -pix_fmt yuv420p "$MASTER"
  fi
}

made=()
make_media() {  # make_media NAME MAXRATE [ffmpeg args before the encoder]
  local name=$1 rate=$2; shift 2
  local out="$MEDIA_DIR/$name"
  if [ -s "$out" ]; then return; fi
  local t0=$SECONDS
  # shellcheck disable=SC2046
  "${FF[@]}" "$@" $(enc "$rate") -f mp4 "$out.tmp"
  mv "$out.tmp" "$out"
  made+=("$name")
  log "made $name ($(du -h "$out" | cut -f1), $((SECONDS - t0)) s)"
}
need() { [ ! -s "$MEDIA_DIR/$1" ]; }

if need street-1080p.mp4; then master; make_media street-1080p.mp4 4M -i "$MASTER" -vf "$(fit 1920 1080)"; fi
if need street-720p.mp4; then master; make_media street-720p.mp4 2M -i "$MASTER" -vf "$(fit 1280 720)"; fi
if need street-360p.mp4; then master; make_media street-360p.mp4 800k -i "$MASTER" -vf "$(fit 640 360)"; fi
make_media black-360p.mp4 200k -f lavfi -i "color=c=black:s=640x360:r=25:d=60"
if need frozen-360p.mp4; then
  master
  make_media frozen-360p.mp4 800k -i "$MASTER" \
    -vf "trim=end_frame=75,setpts=PTS-STARTPTS,$(fit 640 360),tpad=stop_mode=clone:stop=1425"
fi
if need blurred-360p.mp4; then master; make_media blurred-360p.mp4 800k -i "$MASTER" -vf "$(fit 640 360),gblur=sigma=10"; fi
if need counter-1080p.mp4; then master; make_media counter-1080p.mp4 4M -i "$MASTER" -vf "$(fit 1920 1080),$(counter_filter)"; fi
if need counter-360p.mp4; then master; make_media counter-360p.mp4 800k -i "$MASTER" -vf "$(fit 640 360),$(counter_filter)"; fi

if [ -n "$MASTER" ]; then rm -rf "$(dirname "$MASTER")"; fi
echo "$MEDIA_VERSION" > "$STAMP"
chmod 0644 "$MEDIA_DIR"/*.mp4 "$SRC" "$STAMP"

if [ ${#made[@]} -eq 0 ]; then log "media up to date (v$MEDIA_VERSION)"; fi
log "cache $MEDIA_DIR: $(du -sh "$MEDIA_DIR" | cut -f1)"
for f in "$MEDIA_DIR"/*.mp4; do
  info="$(ffprobe -v error -select_streams v:0 -count_packets \
    -show_entries stream=width,height,r_frame_rate,nb_read_packets,bit_rate -of csv=p=0 "$f")"
  log "  $(basename "$f"): $info (w,h,fps,bit/s,frames)"
done
