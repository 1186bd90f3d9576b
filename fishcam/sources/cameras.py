"""The cameras of a several-camera ``fishcam run``: each ``NAME=URL`` or a plain URL, named from
its masked URL when no name is given, checked before any model loads. Pure: no connection."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from fishcam.errors import ConfigError
from fishcam.sources.live import expand_secrets, is_live, mask_url

CAMERAS_NAME = "cameras.json"  # the several-camera run's report, beside the camera folders
_NAMED = re.compile(r"([A-Za-z0-9_.-]+)=(.+)")
_RESERVED = {".", "..", CAMERAS_NAME}


@dataclass(frozen=True)
class Camera:
    name: str
    url: str  # as given: ``${VAR}`` credentials are expanded only when the camera connects

    @property
    def masked(self) -> str:
        return mask_url(self.url)


def split_name(spec: str) -> tuple[str | None, str]:
    """``NAME=URL`` → (NAME, URL) when URL is a live source; anything else → (None, spec). A URL's
    own ``=`` (``http://cam/video?action=stream``) comes after ``://``, so it is never a name."""
    match = _NAMED.fullmatch(spec)
    if match and is_live(match.group(2)):
        return match.group(1), match.group(2)
    return None, spec


def camera_name(url: str) -> str:
    """A folder name from the masked URL: host, port and path (``127.0.0.1-8554-fish``)."""
    masked = mask_url(url)
    if url.isdigit():
        text = masked  # "webcam 0"
    else:
        parts = urlsplit(masked)
        port = f"-{parts.port}" if parts.port else ""
        text = f"{parts.hostname or ''}{port}-{parts.path}-{parts.query}"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return re.sub(r"-{2,}", "-", name) or "camera"


def parse_cameras(specs: list[str]) -> list[Camera]:
    """Several sources, each ``NAME=URL`` or a plain URL (named from the URL); every one must be
    live, names must differ, and ``${VAR}`` credentials must be set. Raises a one-line ConfigError."""
    cameras = []
    for spec in specs:
        name, url = split_name(spec)
        if not is_live(url):
            raise ConfigError(
                f"{spec!r} is not a live camera: several sources in one 'fishcam run' must all be cameras "
                f"(rtsp://, http(s)://, udp://, … or a webcam index); for several recorded videos use "
                f"'fishcam batch VIDEO... --out DIR'"
            )
        if name is not None and name in _RESERVED:
            raise ConfigError(f"camera name {name!r} is reserved: choose another, as NAME=URL")
        expand_secrets(url)  # an unset ${VAR} stops the run before any model loads
        cameras.append(Camera(name or camera_name(url), url))
    seen: dict[str, Camera] = {}
    for camera in cameras:
        key = camera.name.casefold()  # one folder each, also on case-insensitive disks
        if key in seen:
            first = seen[key]
            raise ConfigError(
                f"two cameras are named {camera.name!r} ({first.masked} and {camera.masked}): "
                f"name each camera as NAME=URL, e.g. 'north={first.masked}' 'south={camera.masked}'"
            )
        seen[key] = camera
    return cameras
