"""The expert's network from its spec: the architecture with random weights and a head sized to
the labels, then a state dict fitted into it with messages that name the keys that do not fit."""

from __future__ import annotations

import torch

from fishcam.errors import ModelError
from fishcam.models.checkpoint import match_by_order
from fishcam.models.expert_spec import ExpertSpec


def build_architecture(spec: ExpertSpec) -> torch.nn.Module:
    """The network with random weights and a head sized to the spec's labels (no download)."""
    library, _, name = spec.architecture.partition(":")
    n = len(spec.labels)
    if library == "torchvision":
        import torchvision

        builder = getattr(torchvision.models, name, None)
        if builder is None:
            raise ModelError(f"torchvision has no model {name!r}")
        model = builder(weights=None)
        if spec.head:
            parent_path, _, leaf = spec.head.rpartition(".")
            parent = model.get_submodule(parent_path) if parent_path else model
            old = getattr(parent, leaf, None) if not leaf.isdigit() else parent[int(leaf)]
            if not isinstance(old, torch.nn.Linear):
                raise ModelError(f"{spec.architecture}: head {spec.head!r} is not a Linear layer")
            new = torch.nn.Linear(old.in_features, n)
            if leaf.isdigit():
                parent[int(leaf)] = new
            else:
                setattr(parent, leaf, new)
        return model
    import timm

    try:
        return timm.create_model(name, pretrained=False, num_classes=n)
    except RuntimeError as exc:
        raise ModelError(f"timm cannot build {name!r}: {exc}") from exc


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], spec: ExpertSpec) -> None:
    """Load a state dict, with messages that name the keys when it does not fit."""
    target = model.state_dict()
    if spec.key_match == "order":
        state = match_by_order(state, target)
    mismatched = [
        f"{key} {tuple(tensor.shape)} vs {tuple(target[key].shape)}"
        for key, tensor in state.items()
        if key in target and tuple(tensor.shape) != tuple(target[key].shape)
    ]
    if mismatched:
        head = spec.head or "the classifier head"
        raise ModelError(
            f"checkpoint {spec.weights} does not fit {spec.architecture} with {len(spec.labels)} labels: "
            f"{'; '.join(mismatched[:3])} (a wrong head size means the checkpoint has a different "
            f"number of classes than the labels; check {head} and the label list)"
        )
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        raise ModelError(
            f"checkpoint {spec.weights} is not a {spec.architecture} state dict: "
            f"missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'…' if len(unexpected) > 3 else ''}"
        )
    model.load_state_dict(state, strict=True)
