#!/usr/bin/python3
"""A real RTSP server for fishcam's live tests: GStreamer's RTSP server on 127.0.0.1.

Runs under Debian's /usr/bin/python3 (the GStreamer bindings are Debian packages). It decodes a
clip once, then serves it in a loop at its frame rate as H.264 over RTSP (TCP and UDP), each
frame stamped with its sequence number (16 black/white 8x8 blocks at the top left, most
significant bit first) so a client can measure its lag from the picture alone.

Prints "PORT <port>" once listening, then "FRAME0 <unix time>" when the first frame is sent.
"""

import argparse
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

BITS = 16
BLOCK = 8


def decode(path):
    """All frames of a clip as BGR bytes, with their size and rate."""
    pipeline = Gst.parse_launch(
        f'filesrc location="{path}" ! decodebin ! videoconvert ! video/x-raw,format=BGR ! appsink name=sink sync=false'
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    frames, caps = [], None
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        caps = sample.get_caps().get_structure(0)
        buffer = sample.get_buffer()
        frames.append(buffer.extract_dup(0, buffer.get_size()))
    pipeline.set_state(Gst.State.NULL)
    if not frames:
        sys.exit(f"no frames decoded from {path}")
    rate = caps.get_fraction("framerate")
    return frames, caps.get_value("width"), caps.get_value("height"), rate.value_numerator / rate.value_denominator


def stamp(frame, number, width):
    out = bytearray(frame)
    stride = width * 3
    for bit in range(BITS):
        value = b"\xff" * (BLOCK * 3) if number >> (BITS - 1 - bit) & 1 else b"\x00" * (BLOCK * 3)
        for row in range(BLOCK):
            start = row * stride + bit * BLOCK * 3
            out[start : start + BLOCK * 3] = value
    return bytes(out)


class LoopingClip:
    def __init__(self, frames, width, height, fps):
        self.frames, self.width, self.fps = frames, width, fps
        self.caps = f"video/x-raw,format=BGR,width={width},height={height},framerate={round(fps)}/1"
        self.sequence = 0
        self.appsrcs = []
        self.started = False

    def attach(self, factory, media):
        appsrc = media.get_element().get_child_by_name("src")
        self.appsrcs.append(appsrc)

    def push(self):
        """Send every frame that is due: frame n leaves at FRAME0 + n / fps, without drift.
        Like a real camera, the clock runs on while nobody watches."""
        now = time.time()
        if not self.started:
            if not self.appsrcs:
                return True
            self.started, self.t0 = True, now
            print(f"FRAME0 {now:.6f}", flush=True)
        due = int((now - self.t0) * self.fps)
        if not self.appsrcs:
            self.sequence = due + 1
            return True
        while self.sequence <= due:
            frame = stamp(self.frames[self.sequence % len(self.frames)], self.sequence, self.width)
            for appsrc in list(self.appsrcs):
                if appsrc.emit("push-buffer", Gst.Buffer.new_wrapped(frame)) != Gst.FlowReturn.OK:
                    self.appsrcs.remove(appsrc)  # that client went away
            self.sequence += 1
        return True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path", default="/fish")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    Gst.init(None)
    frames, width, height, fps = decode(args.clip)
    clip = LoopingClip(frames, width, height, fps)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( appsrc name=src is-live=true do-timestamp=true format=time caps={clip.caps} ! "
        "videoconvert ! video/x-raw,format=I420 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={round(fps)} ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    factory.connect("media-configure", clip.attach)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role("viewer")
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.path, factory)
    server.attach(None)
    print(f"PORT {server.get_bound_port()}", flush=True)
    GLib.timeout_add(5, clip.push)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
