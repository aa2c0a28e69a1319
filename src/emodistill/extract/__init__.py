"""Feature extraction from raw video into the MMSA pickle schema (``emodistill extract``).

Heavy libraries (PyAV, librosa, MediaPipe, OpenCV, transformers, faster-whisper, openSMILE) are imported
only inside the functions that use them; a missing one raises
:class:`~emodistill.extract.errors.MissingExtraError` naming the pip extra.
"""

from emodistill.extract.config import ExtractConfig, load_extract_config
from emodistill.extract.dataset import extract_dataset

__all__ = ["ExtractConfig", "extract_dataset", "load_extract_config"]
