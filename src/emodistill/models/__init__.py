"""Model zoo. Importing this package registers every model.

Dimension legend used in docstrings and shape comments throughout the package:
``B`` batch, ``T`` time steps (per modality ``T_l``, ``T_a``, ``T_v``; ``T'`` after a temporal
convolution), ``D`` input feature dim (``D_l``, ``D_a``, ``D_v``), ``d`` model width, ``M`` modalities,
``E`` directed edges of a GD-Unit (6 for three modalities).
"""

# Import the model modules for their registration side effect.
from emodistill.models import ef_lstm as _ef_lstm  # noqa: F401,E402
from emodistill.models import late_fusion as _late_fusion  # noqa: F401,E402
from emodistill.models import lf_dnn as _lf_dnn  # noqa: F401,E402
from emodistill.models import lmf as _lmf  # noqa: F401,E402
from emodistill.models import misa as _misa  # noqa: F401,E402
from emodistill.models import mult as _mult  # noqa: F401,E402
from emodistill.models import self_mm as _self_mm  # noqa: F401,E402
from emodistill.models import tfn as _tfn  # noqa: F401,E402
from emodistill.models.dmd import dhmd as _dhmd  # noqa: F401,E402
from emodistill.models.dmd import model as _dmd  # noqa: F401,E402
from emodistill.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
