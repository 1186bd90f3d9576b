"""``fishcam serve``: see and correct runs in a browser; ``fishcam run --serve``: watch a run live.

- :mod:`fishcam.serve.app`: the pages and their routes (Starlette);
- :mod:`fishcam.serve.runs`: what the pages show, read from the run folders;
- :mod:`fishcam.serve.live`: the holder between the frame loop and the live page;
- :mod:`fishcam.serve.safety`: binding, the token, paths, masked camera URLs;
- :mod:`fishcam.serve.server`: uvicorn, in the foreground or on a thread of a run.

See docs/serve.md.
"""
