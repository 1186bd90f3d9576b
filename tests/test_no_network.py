"""No network at run time, telemetry included: the real CLI in subprocesses, watched.

Three layers watch each command: a ``sitecustomize`` guard records every lookup and connection
made from Python in the process and all its children (with the code that made it); strace
records every connect/send syscall, so native code (ONNX Runtime's telemetry uploader is C++
with its own HTTP client) is seen too; and where it is allowed, the command runs in a network
namespace of its own (``unshare -n``), so that a regression cannot reach the internet from the
test machine. Only loopback (not DNS) and unix sockets are allowed. HOME points at an empty
folder, so the telemetry files libraries leave behind show up too.

``fishcam serve`` does not exist yet; when it does, it belongs here.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from builders import ROOT, SAMPLES, TEST_DETECTOR, efficientnet_lite0_weights

pytestmark = pytest.mark.slow

GUARD = r'''
"""Records every name lookup and socket connection made from Python in $FISHCAM_NET_LOG."""
import json
import os
import socket
import traceback

_LOG = os.environ.get("FISHCAM_NET_LOG")


def _record(kind, host, port=None, family=None):
    stack = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()[:-2]]
    entry = {"pid": os.getpid(), "kind": kind, "host": host, "port": port, "family": family, "stack": stack[-8:]}
    with open(_LOG, "a") as handle:
        handle.write(json.dumps(entry, default=repr) + "\n")


def _lookup(name):
    original = getattr(socket, name)

    def guarded(host, *args, **kwargs):
        _record(name, host, args[0] if args and name == "getaddrinfo" else None)
        return original(host, *args, **kwargs)

    setattr(socket, name, guarded)


def _connection(name, address_index):
    original = getattr(socket.socket, name)

    def guarded(self, *args, **kwargs):
        address = args[address_index] if len(args) > address_index else None
        if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            _record(name, address[0], address[1], self.family.name)
        elif self.family != socket.AF_UNIX:
            _record(name, repr(address), None, getattr(self.family, "name", str(self.family)))
        return original(self, *args, **kwargs)

    setattr(socket.socket, name, guarded)


if _LOG:
    for _name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        _lookup(_name)
    _original_create_connection = socket.create_connection

    def _create_connection(address, *args, **kwargs):
        _record("create_connection", address[0], address[1])
        return _original_create_connection(address, *args, **kwargs)

    socket.create_connection = _create_connection
    _connection("connect", 0)
    _connection("connect_ex", 0)
    _connection("sendto", -1)
'''

# Variables that would hide traffic from this test: the switches fishcam sets itself (the test
# is about what fishcam does, not what the test suite's conftest set), CI markers that some
# libraries read as "no telemetry", and pytest's marker that Ultralytics reads the same way.
HIDING = {
    "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "DISABLE_TELEMETRY", "DO_NOT_TRACK",
    "YOLO_OFFLINE", "YOLO_AUTOINSTALL", "YOLO_CONFIG_DIR", "ORT_DISABLE_TELEMETRY",
    "RAY_USAGE_STATS_ENABLED", "PYTEST_CURRENT_TEST",
    "CI", "TF_BUILD", "JENKINS_URL", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS",
    "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER",
}  # fmt: skip

# Files telemetry leaves behind: OpenVINO's consent/client id/usage count, ONNX Runtime's device
# id and event queue, a user's own Ultralytics settings.
TELEMETRY_FILES = ("intel", "Microsoft", ".config/Ultralytics", "Ultralytics", ".ray")

LOCAL_NAMES = {None, "", "localhost", "localhost.localdomain"}
SOCKADDR = re.compile(
    r"sa_family=AF_INET6?, sin6?_port=htons\((\d+)\),.*?(?:inet_addr|inet_pton)\((?:AF_INET6, )?\"([^\"]+)\""
)


@cache
def _works(*command: str) -> bool:
    try:
        return subprocess.run([*command, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _strace(log: Path) -> list[str]:
    base = ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-e", "signal=none", "-o", str(log)]
    return [*base[:1], "--seccomp-bpf", *base[1:]] if _works("strace", "--seccomp-bpf", "-f") else base


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def _allowed(host: str | None, port: object) -> bool:
    """Loopback and unix sockets only; DNS is a lookup wherever the resolver is (127.0.0.53 too)."""
    if str(port) == "53":
        return False
    return host in LOCAL_NAMES or _is_loopback(str(host))


@dataclass
class Watched:
    returncode: int
    stdout: str
    output: str  # stdout and stderr
    attempts: list[str]  # every lookup and connection that was not loopback
    telemetry_files: list[str]
    home_files: list[str]
    layers: list[str]


def watched(args: list[str], tmp_path: Path, program: list[str] | None = None, timeout: float = 240) -> Watched:
    """Run ``fishcam ARGS`` (or ``PROGRAM ARGS``) watched, in a clean HOME and cache."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    home, cache_dir = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    net_log, strace_log = tmp_path / "python-net.log", tmp_path / "strace.log"
    env = {k: v for k, v in os.environ.items() if k not in HIDING}
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(cache_dir),
        HF_HUB_CACHE=str(tmp_path / "hf-cache"),
        FISHCAM_NET_LOG=str(net_log),
        PYTHONPATH=os.pathsep.join([str(guard), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    script = Path(sys.executable).with_name("fishcam")  # the installed entry point, as users run it
    command = program or ([str(script)] if script.is_file() else [sys.executable, "-m", "fishcam"])
    layers = ["python guard"]
    if shutil.which("strace") and _works("strace", "-f"):
        command = [*_strace(strace_log), *command]
        layers.append("strace")
    if shutil.which("unshare") and _works("unshare", "-n"):
        command = ["unshare", "-n", *command]
        layers.append("unshare -n")
    done = subprocess.run(
        [*command, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )  # fmt: skip

    attempts = []
    if net_log.is_file():
        for line in net_log.read_text().splitlines():
            entry = json.loads(line)
            if not _allowed(entry["host"], entry["port"]):
                where = " <- ".join(s.split("site-packages/")[-1] for s in reversed(entry["stack"][-4:]))
                attempts.append(
                    f"python {entry['kind']} {entry['host']}:{entry['port']} (pid {entry['pid']}) at {where}"
                )
    if strace_log.is_file():
        for line in strace_log.read_text().splitlines():
            match = SOCKADDR.search(line)
            if match and not _allowed(match.group(2), match.group(1)):
                attempts.append(f"syscall {line.strip()}")
    telemetry = sorted(
        str(root / name) for root in (home, cache_dir) for name in TELEMETRY_FILES if (root / name).exists()
    )
    home_files = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    return Watched(done.returncode, done.stdout, done.stdout + done.stderr, attempts, telemetry, home_files, layers)


def assert_sent_nothing(result: Watched) -> None:
    assert result.returncode == 0, result.output[-3000:]
    assert not result.attempts, f"network attempts ({', '.join(result.layers)}):\n" + "\n".join(result.attempts[:40])
    assert not result.telemetry_files, f"telemetry files written: {result.telemetry_files}"
    # matplotlib makes its (empty) config folder; nothing else belongs in a user's HOME.
    assert set(result.home_files) <= {".config", ".config/matplotlib"}, f"written into HOME: {result.home_files}"


# ---- the guard itself ----------------------------------------------------------------------


def test_the_guard_sees_lookups_from_python(tmp_path):
    """A check that cannot fail is no check: a lookup from Python and a telemetry file are
    caught, a loopback connection is not counted."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, socket\n"
        "try: socket.getaddrinfo('telemetry.python.invalid', 443)\n"
        "except OSError: pass\n"
        "s = socket.socket(); s.settimeout(1); s.connect_ex(('127.0.0.1', 9))\n"
        "os.makedirs(os.path.expanduser('~/intel'))\n"
    )
    result = watched([str(probe)], tmp_path, program=[sys.executable])  # the CLI tests' runner
    assert result.returncode == 0, result.output
    assert any(a.startswith("python getaddrinfo telemetry.python.invalid:443") for a in result.attempts)
    assert not any("127.0.0.1" in a for a in result.attempts), result.attempts
    assert result.telemetry_files == [str(tmp_path / "home" / "intel")]
    assert result.home_files == ["intel"]


def test_the_guard_sees_lookups_from_native_code(tmp_path):
    """libc's getaddrinfo called from C (here through ctypes), as ONNX Runtime's uploader does,
    never passes through Python: strace sees the resolver being asked (port 53)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import ctypes\n"
        "result = ctypes.c_void_p()\n"
        "ctypes.CDLL(None).getaddrinfo(b'telemetry.native.invalid', b'443', None, ctypes.byref(result))\n"
    )
    result = watched([str(probe)], tmp_path, program=[sys.executable])
    assert result.returncode == 0, result.output
    if "strace" not in result.layers:
        pytest.skip("strace is missing or not allowed here: native lookups are not watched (scripts/setup-system)")
    assert not any(a.startswith("python") for a in result.attempts), result.attempts
    assert any(a.startswith("syscall") and "htons(53)" in a for a in result.attempts), result.attempts


# ---- the commands --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def yolo_run(tmp_path_factory) -> tuple[Watched, Path]:
    """`fishcam run` with the test YOLO exported to OpenVINO (the export is part of what is
    watched), and the exported model folder for the batch test."""
    tmp_path = tmp_path_factory.mktemp("yolo-run")
    result = watched(
        ["run", str(SAMPLES / "dive_sample.mp4"), "--config", "configs/count-only.yaml",
         "--set", "detector.kind=yolo", "--set", f"detector.weights={TEST_DETECTOR}",
         "--set", "detector.image_size=320", "--set", "detector.backend=openvino",
         "--max-frames", "30", "--out", str(tmp_path / "out"), "-q"],
        tmp_path,
    )  # fmt: skip
    assert (tmp_path / "out" / "summary.json").is_file(), result.output[-3000:]
    exported = list((tmp_path / "cache" / "fishcam" / "exports").glob("*openvino*/model_openvino_model"))
    assert len(exported) == 1, result.output[-3000:]
    return result, exported[0]


def test_run_with_yolo_on_openvino_sends_nothing(yolo_run):
    assert_sent_nothing(yolo_run[0])


def test_classify_with_expert_and_fallback_sends_nothing(tmp_path, convnext_checkpoint, tiny_clip):
    images = sorted(str(p) for p in (ROOT / "tests" / "data" / "real-fish").iterdir())
    result = watched(
        ["classify", *images, "--format", "json", "--species", str(SAMPLES / "species.txt"),
         "--set", f"classify.expert.weights={convnext_checkpoint}", "--set", f"classify.fallback.model={tiny_clip}",
         "--set", "classify.expert.threshold=0.05", "--set", "classify.fallback.threshold=0.2"],
        tmp_path,
    )  # fmt: skip
    assert_sent_nothing(result)
    assert len(json.loads(result.stdout)) == len(images)


def _fish_dataset():
    """tests/train/fish_dataset.py, also when the training tests were not collected."""
    if "fish_dataset" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fish_dataset", ROOT / "tests" / "train" / "fish_dataset.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["fish_dataset"] = module
    return sys.modules["fish_dataset"]


def test_train_with_rembg_sends_nothing(tmp_path):
    u2net = ROOT / ".cache" / "u2net"
    if not (u2net / "u2netp.onnx").is_file():
        pytest.fail(f"{u2net / 'u2netp.onnx'} is missing: run scripts/setup --test (it extracts it, once)")
    data = _fish_dataset().make_dataset(tmp_path / "data", ["clownfish", "lionfish"], per_class=8, size=64)
    result = watched(
        ["train", str(data), "--out", str(tmp_path / "trained"), "-q",
         "--set", "model.architecture=timm:tf_efficientnet_lite0",
         "--set", f"model.pretrained={efficientnet_lite0_weights()}", "--set", "model.pretrained_key_match=order",
         "--set", "preprocess.size=64", "--set", "balance.min_per_class=8",
         "--set", f"balance.rembg.home={u2net}", "--set", "balance.rembg.probability=1",
         "--set", "data.val_fraction=0.25", "--set", "data.test_fraction=0.25", "--set", "batch_size=8",
         "--set", "stage1.epochs=1", "--set", "stage2.epochs=1"],
        tmp_path,
    )  # fmt: skip
    assert_sent_nothing(result)
    masks = list((tmp_path / "cache" / "fishcam" / "rembg-masks").rglob("*.png"))
    assert masks, "rembg (ONNX Runtime) did not run"


def test_batch_with_worker_processes_sends_nothing(tmp_path):
    result = watched(
        ["batch", str(SAMPLES / "fixed_sample.mp4"), str(SAMPLES / "dive_sample.mp4"), "--out", str(tmp_path / "out"),
         "--workers", "2", "--config", "configs/count-only.yaml", "--set", "source.max_frames=20", "-q"],
        tmp_path,
    )  # fmt: skip
    assert_sent_nothing(result)
    assert len(json.loads((tmp_path / "out" / "batch_report.json").read_text())["done"]) == 2


def test_batch_workers_with_yolo_on_openvino_send_nothing(tmp_path):
    """Spawned workers set up their own process (fishcam.runtime.setup in batch._worker_init).
    Both export the same .pt to OpenVINO at once, each in a folder of its own: neither may crash."""
    result = watched(
        ["batch", str(SAMPLES / "fixed_sample.mp4"), str(SAMPLES / "dive_sample.mp4"), "--out", str(tmp_path / "out"),
         "--workers", "2", "--config", "configs/count-only.yaml", "--set", "source.max_frames=20",
         "--set", "detector.kind=yolo", "--set", f"detector.weights={TEST_DETECTOR}",
         "--set", "detector.image_size=320", "--set", "detector.backend=openvino", "-q"],
        tmp_path,
    )  # fmt: skip
    assert_sent_nothing(result)
    report = json.loads((tmp_path / "out" / "batch_report.json").read_text())
    assert len(report["done"]) == 2 and not report["failed"], report["failed"]
