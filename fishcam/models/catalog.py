"""The published models fishcam's presets use: where each comes from, under what licence, what it
detects or names, and the checksums known for it. Data only; ``fishcam models list`` shows it.

Every fact here names where it was read. What could not be checked from where fishcam was built
(the model hubs and release pages were out of reach) is marked ``unverified`` and says so in the
list: a user deciding whether to publish counts made with a model needs to know which is which.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """One published model file."""

    key: str  # a short name for the tables
    role: str  # detector, expert or fallback
    ref: str | None  # what a config's weights key says (None: no fixed download, see ``get``)
    name: str
    architecture: str
    classes: tuple[str, ...]  # detectors: the class names in the file; classifiers: what they name
    licence: str
    source: str  # where the file is published
    trained_on: str
    image_size: int | None = None  # the size it was trained at (detectors)
    sha256: str | None = None  # checked on fetch when known; else recorded at the first fetch
    git_blob: str | None = None  # a file in a git repo: its git blob id (SHA-1), checked on fetch
    get: str = ""  # how to get it where ``ref`` is None
    expected_at: str | None = None  # where ``ref``-less files are expected (a preset's weights path)
    unverified: str = ""  # what was not checked from here, said in the list and the docs
    evidence: str = ""  # where the facts above were read


CFD_YOLO = Published(
    key="cfd-yolo12x",
    role="detector",
    ref="https://github.com/filippovarini/community-fish-detector/releases/download/cfd-1.00-yolov12x/"
    "cfd-yolov12x-1.00.pt",
    name="Community Fish Detector 1.00",
    architecture="Ultralytics YOLO12x",
    classes=("fish",),
    licence="AGPL-3.0",
    source="github.com/filippovarini/community-fish-detector, release cfd-1.00-yolov12x",
    trained_on="Community Fish Detection Dataset: 1.9 M images, 935 k boxes, 17 open datasets "
    "(marine, freshwater, lab)",
    image_size=1024,
    unverified="sha256 not published: recorded at the first fetch; the file was not opened here",
    evidence="the project README (release tag, file name, YOLO12x, 1024 px, one class fish, AGPL); "
    "the repository moved from WildHackers/community-fish-detector, whose README names the same asset",
)

CFD_RFDETR_NANO = Published(
    key="cfd-rfdetr-nano",
    role="detector",
    ref=None,
    name="Community Fish Detector, RF-DETR nano",
    architecture="RF-DETR nano (rfdetr package)",
    classes=("fish",),
    licence="Apache-2.0",
    source="github.com/filippovarini/community-fish-detector, release 2026.07.06-release",
    trained_on="as the YOLO12x",
    image_size=640,
    get="download cfd-rf-detr-nano-640-….pth from the release page and set detector.weights to its path",
    expected_at="models/cfd-rf-detr-nano-640.pth",  # configs/dive-rfdetr.yaml
    unverified="the exact file name and sha256 were not readable from here; not opened here",
    evidence="the project README of that release (its authors' current recommendation; nano 640, "
    "small and medium 1024; classes {'0': 'fish'})",
)

FATHOMNET_VME = Published(
    key="fathomnet-vme",
    role="detector",
    ref="hf://FathomNet/vulnerable-marine-ecosystems/best.pt",
    name="FathomNet vulnerable marine ecosystems",
    architecture="Ultralytics YOLOv8x",
    classes=("corals", "crinoids", "Fish", "sponges"),
    licence="CC-BY-4.0",
    source="huggingface.co/FathomNet/vulnerable-marine-ecosystems",
    trained_on="MBARI deep-sea ROV imagery, mostly 500-4000 m",
    unverified="class ids and sha256 not checked from here; pinned to the hub commit at the first fetch",
    evidence="the model card; fish is class 2, named Fish",
)

FATHOMNET_MEGALODON = Published(
    key="fathomnet-megalodon",
    role="detector",
    ref="hf://FathomNet/megalodon/mbari-megalodon-yolov8x.pt",
    name="FathomNet Megalodon",
    architecture="Ultralytics YOLOv8x",
    classes=("object",),
    licence="CC-BY-4.0",
    source="huggingface.co/FathomNet/megalodon",
    trained_on="FathomNet (deep sea): any salient object, not only fish",
    unverified="files were renamed after release: pinned to the hub commit at the first fetch; not opened here",
    evidence="the model card",
)

SHARKTRACK = Published(
    key="sharktrack",
    role="detector",
    ref="https://raw.githubusercontent.com/filippovarini/sharktrack/99f6ce685229db573641da6ecea3d3c506e5f5c7/"
    "models/sharktrack.pt",
    name="SharkTrack",
    architecture="Ultralytics YOLOv8n",
    classes=("elasmobranch",),
    licence="MIT",
    source="github.com/filippovarini/sharktrack, models/sharktrack.pt at commit 99f6ce6",
    trained_on="6,862 BRUV frames from 77 clips at 25 locations (sharks and rays)",
    image_size=640,
    git_blob="448dd34be3b79f90c291f5b046777f932af44dae",
    unverified="the weights themselves were not opened here (only the repository's tree and code)",
    evidence="the repository at that commit: the file's git blob id, class elasmobranch "
    "(utils/sharktrack_annotations.py), imgsz 640 (app.py), MIT (readme)",
)

EXPERT = Published(
    key="convnext-fish-40",
    role="expert",
    ref="hf://Heretix/convnext-fish-classifier/balik_modeli_final.pth",
    name="ConvNeXt fish classifier",
    architecture="ConvNeXt-Tiny (torchvision or timm key layout)",
    classes=("40 fish classes, mostly market and farmed species photographed out of water",),
    licence="MIT",
    source="huggingface.co/Heretix/convnext-fish-classifier",
    trained_on="the model card names no dataset; the classes match a Philippine fish set and Turkish fish-market "
    "photos",
    unverified="the dataset and the key layout (the card's metadata and its code disagree) were not checked",
    evidence="the model card",
)

BIOCLIP_2 = Published(
    key="bioclip-2",
    role="fallback",
    ref="hf-hub:imageomics/bioclip-2",
    name="BioCLIP-2",
    architecture="open_clip ViT-L/14",
    classes=("zero-shot over your species list",),
    licence="MIT",
    source="huggingface.co/imageomics/bioclip-2",
    trained_on="TreeOfLife-200M",
    unverified="licence as the model card states it; not opened here",
    evidence="the model card",
)

CATALOG: tuple[Published, ...] = (
    CFD_YOLO, CFD_RFDETR_NANO, FATHOMNET_VME, FATHOMNET_MEGALODON, SHARKTRACK, EXPERT, BIOCLIP_2,
)  # fmt: skip


def published(ref: str) -> Published | None:
    """The catalogue's entry for a model reference (the same file at a pinned revision included)."""
    for entry in CATALOG:
        if entry.ref is not None and _unpinned(entry.ref) == _unpinned(ref):
            return entry
        if entry.ref is None and entry.expected_at == ref:  # downloaded by hand to where a preset looks
            return entry
    return None


def _unpinned(ref: str) -> str:
    """``hf://org/repo@rev/file`` as ``hf://org/repo/file``: one entry whatever revision is pinned."""
    if ref.startswith("hf://") and "@" in ref:
        head, _, rest = ref.partition("@")
        return head + "/" + rest.partition("/")[2]
    return ref
