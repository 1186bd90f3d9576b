"""fishcam: which fish are in underwater video, tracked and counted per species."""

import os as _os

# torch's OpenMP threads otherwise spin for a while after each operator, taking the cores from
# the detector's OpenVINO threads, the decoder and the encoder that share them: passive waiting
# measured +8 % fps on the 20-fish 1080p benchmark (2 cores). Set before torch is imported; a
# value the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
