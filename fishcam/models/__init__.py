"""Models from reference to ready module: specs and manifests (``expert_spec``), local-first
resolution and the explicit fetch step (``hub``, ``inventory``), safe reading of weight files
(``checkpoint``), loading with one entry per kind of model (``loading``), conversion for faster
runtimes (``convert``), device and backend choice (``devices``) and fishcam's cache folder (``paths``)."""
