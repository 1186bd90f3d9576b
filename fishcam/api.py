"""fishcam from Python (a notebook, a service): the same runs the command line makes.

    import fishcam

    summary = fishcam.process_video("dive.mp4", "runs/dive", "configs/dive.yaml")
    print(summary.species)          # {"Pterois volitans": SpeciesTally(unique=2, max_n=2), ...}

Every call writes the run folder exactly as ``fishcam run`` does (see docs/api.md). Errors are
:class:`fishcam.FishcamError` subclasses with the one-line message the command prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from fishcam.app.compose import Components
from fishcam.config import Config
from fishcam.pipeline import LoopStats
from fishcam.types import RunSummary


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), *, species: str | Path | None = None
) -> Config:
    """A validated config: a YAML file (None: the defaults), ``key=value`` overrides as ``--set``
    takes them, and the fallback's species list."""
    from fishcam import config

    values = {"classify.fallback.species_list": str(species)} if species is not None else None
    return config.load_config(path, list(overrides), values)


def load_models(config: Config) -> Components:
    """The models ``config`` asks for, loaded once: pass them to :func:`process_video` to process
    many videos without loading again. Raises MissingModelError naming every missing file."""
    from fishcam import runtime
    from fishcam.app.compose import build_components

    runtime.setup()
    return build_components(config)


def process_video(
    source: str | Path,
    out_dir: str | Path,
    config: Config | str | Path | None = None,
    *,
    models: Components | None = None,
    on_progress: Callable[[LoopStats], None] | None = None,
) -> RunSummary:
    """Process a video file, a folder of images or a camera URL into ``out_dir``, as
    ``fishcam run SOURCE --out OUT_DIR`` does; returns the run's summary (also in
    ``out_dir/summary.json``). ``config`` is a Config or a YAML path (None: the defaults);
    ``models`` from :func:`load_models` (None: loaded for this call). The exit code the
    command would return is ``summary.exit_code``."""
    from fishcam import runtime
    from fishcam.app.compose import build_components
    from fishcam.app.run import run
    from fishcam.sources import open_source

    runtime.setup()
    if not isinstance(config, Config):
        config = load_config(config)
    opened = open_source(str(source), config.source)
    try:
        components = models if models is not None else build_components(config)
    except BaseException:
        opened.close()
        raise
    _, summary = run(opened, config, Path(out_dir), components, on_progress)
    return summary
