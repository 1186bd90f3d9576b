"""Training and evaluation of species experts (``fishcam train``, ``fishcam eval``).

Never imported by ``fishcam run``: the run-time package stays free of training code."""
