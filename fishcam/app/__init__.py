"""The application layer: what the commands do, composed from the stages (sources, detect,
track, classify, sinks). Nothing below this folder imports from it."""
