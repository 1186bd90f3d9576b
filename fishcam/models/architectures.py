"""The expert's network from its spec: the architecture with random weights and a head sized to
the labels, then a state dict fitted into it with messages that name the keys that do not fit."""

from __future__ import annotations

import dataclasses
import logging

import torch

from fishcam.errors import ModelError
from fishcam.models.checkpoint import match_by_order
from fishcam.models.expert_spec import PUBLISHED_LAYOUTS, ExpertSpec, KeyLayout

log = logging.getLogger(__name__)


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


def fit_layout(spec: ExpertSpec, state: dict[str, torch.Tensor]) -> ExpertSpec:
    """The spec with the architecture that reads ``state``: for a spec with key layouts (the
    published expert), the layout its keys' top-level names are in, said in one log line; a spec
    without (a manifest's) as it is. Keys of none of its layouts are a one-line ModelError."""
    if not spec.layouts:
        return spec
    layout = layout_of(state, spec.layouts)
    if layout is None:
        raise ModelError(
            f"checkpoint {spec.weights} is in neither key layout the {spec.name} expert accepts, "
            f"{_accepted(spec.layouts)}: its keys start with {_top_level(state)}"
        )
    log.info("expert checkpoint %s has the key layout of %s: running %s",
             spec.weights, layout.describe(), layout.architecture)  # fmt: skip
    return dataclasses.replace(spec, architecture=layout.architecture, head=layout.head)


def layout_of(state: dict[str, torch.Tensor], layouts: tuple[KeyLayout, ...]) -> KeyLayout | None:
    """The one layout whose marking names are among ``state``'s top-level names; None when no
    layout's are, or more than one's."""
    names = {key.split(".", 1)[0] for key in state}
    found = [layout for layout in layouts if names & set(layout.prefixes)]
    return found[0] if len(found) == 1 else None


def _accepted(layouts: tuple[KeyLayout, ...]) -> str:
    return " or ".join(layout.describe() for layout in layouts)


def _top_level(state: dict[str, torch.Tensor]) -> str:
    names = sorted({key.split(".", 1)[0] for key in state})
    return ", ".join(name + ".*" for name in names[:6]) + ("…" if len(names) > 6 else "")


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], spec: ExpertSpec) -> None:
    """Load a state dict, with messages that name the keys when it does not fit."""
    target = model.state_dict()
    if spec.key_match == "order":
        state = match_by_order(state, target)
    mismatched = [key for key, tensor in state.items() if key in target and tensor.shape != target[key].shape]
    shapes = "; ".join(f"{key} {tuple(state[key].shape)} vs {tuple(target[key].shape)}" for key in mismatched[:3])
    head = _head_name(model, spec)
    if mismatched and (head is None or all(key.startswith(head + ".") for key in mismatched)):
        raise ModelError(
            f"checkpoint {spec.weights} does not fit {spec.architecture} with {len(spec.labels)} labels: "
            f"{shapes} (a wrong head size means the checkpoint has a different "
            f"number of classes than the labels; check {head or 'the classifier head'} and the label list)"
        )
    if mismatched:  # shapes differ outside the head: another network under the same names
        raise ModelError(
            f"checkpoint {spec.weights} is not a {spec.architecture} state dict: {shapes}{_layout_hint(state, spec)}"
        )
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        raise ModelError(
            f"checkpoint {spec.weights} is not a {spec.architecture} state dict: "
            f"missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'…' if len(unexpected) > 3 else ''}{_layout_hint(state, spec)}"
        )
    model.load_state_dict(state, strict=True)


def _head_name(model: torch.nn.Module, spec: ExpertSpec) -> str | None:
    """The dotted name of the classifier head: the spec's, or the one timm's model says."""
    if spec.head:
        return spec.head
    get_classifier = getattr(model, "get_classifier", None)
    if not callable(get_classifier):
        return None
    classifier = get_classifier()
    return next((name for name, module in model.named_modules() if module is classifier and name), None)


def _layout_hint(state: dict[str, torch.Tensor], spec: ExpertSpec) -> str:
    """What a state dict that does not fit may be instead: for the published expert, the layouts it
    accepts; for a manifest naming one of them, the other when the keys are in its layout."""
    if spec.layouts:
        return f" (the {spec.name} expert accepts {_accepted(spec.layouts)})"
    if spec.architecture not in {layout.architecture for layout in PUBLISHED_LAYOUTS}:
        return ""
    layout = layout_of(state, PUBLISHED_LAYOUTS)
    if layout is None or layout.architecture == spec.architecture:
        return ""
    return f" (its keys look like {layout.describe()}: name architecture {layout.architecture} in the manifest)"


class WithFeatures(torch.nn.Module):
    """The expert's one forward pass giving ``(logits, features)``: the features are the input of
    its classifier head (pooled, penultimate), the logits exactly the network's own."""

    def __init__(self, body: torch.nn.Module, head: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.body = body  # timm: the network (forward_features, forward_head); torchvision: a traced graph
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.head is None:  # a graph that returns both
            logits, features = self.body(x)
            return logits, features
        features = self.body.forward_head(self.body.forward_features(x), pre_logits=True)  # type: ignore[operator]
        return self.head(features), features


def with_features(network: torch.nn.Module, spec: ExpertSpec) -> WithFeatures | None:
    """``network`` (in eval mode) as a :class:`WithFeatures` sharing its weights, or None when its
    head's input cannot be read (the open-set check then stays off). timm: its own
    ``forward_features`` / ``forward_head(pre_logits=True)`` / ``get_classifier()``;
    torchvision: the network traced by torch.fx, the head's input added to its outputs. Either way
    the logits must equal the network's own on a probe input, or it is None."""
    library = spec.architecture.partition(":")[0]
    try:
        if library == "timm":
            wrapped = WithFeatures(network, network.get_classifier())  # type: ignore[operator]
        else:
            wrapped = WithFeatures(_traced_with_head_input(network, spec.head or _last_linear(network)))
        parameter = next(network.parameters())
        probe = torch.randn(2, 3, *spec.preprocess.size, generator=torch.Generator().manual_seed(0))
        probe = probe.to(parameter.device, parameter.dtype)
        with torch.inference_mode():
            logits, features = wrapped(probe)
            same = torch.allclose(logits.float(), network(probe).float(), rtol=1e-3, atol=1e-4)
        if not same or features.ndim != 2 or features.shape[0] != 2:
            raise ValueError("its logits differ from the network's, or its features are not one vector per crop")
    except Exception as exc:  # any library's failure to trace or split: the check is off, the expert runs
        log.warning("open-set check unavailable for %s: its classifier head's input cannot be read (%s)",
                    spec.architecture, str(exc).split("\n")[0])  # fmt: skip
        return None
    return wrapped


def _last_linear(network: torch.nn.Module) -> str:
    linears = [name for name, module in network.named_modules() if isinstance(module, torch.nn.Linear)]
    if not linears:
        raise ValueError("it has no Linear layer")
    return linears[-1]


def _traced_with_head_input(network: torch.nn.Module, head: str) -> torch.nn.Module:
    import torch.fx

    graph_module = torch.fx.symbolic_trace(network)  # shares the network's modules and weights
    calls = [n for n in graph_module.graph.nodes if n.op == "call_module" and n.target == head]
    if len(calls) != 1 or not calls[0].args:
        raise ValueError(f"the traced network calls its head {head!r} {len(calls)} times")
    output = next(n for n in graph_module.graph.nodes if n.op == "output")
    output.args = ((output.args[0], calls[0].args[0]),)
    graph_module.recompile()
    return graph_module
