"""Model zoo: the registered models, the layers they share and the registry. Importing this package
registers every model.

Where things live:

* :mod:`.base`: :class:`~.base.MERModel`, what the training loop expects of a model (its objective, whose
  task term is :func:`~.base.task_loss`, and the :meth:`~.base.MERModel.inference_cache` hook);
* :mod:`.registry`: ``register_model``, ``create_model``, ``list_models``, ``load_checkpoint``;
* :mod:`.dmd`: DMD (``model``, ``config``, ``losses``, ``gd_unit``, ``official`` checkpoint import) and the
  reconstructed DHMD (``dhmd``, ``dictionary``);
* one baseline per module: :mod:`.mult` (MulT), :mod:`.misa`, :mod:`.self_mm`, :mod:`.tfn`, :mod:`.lmf`,
  :mod:`.lf_dnn`, :mod:`.ef_lstm` (MMSA's models) and :mod:`.late_fusion` (a light late-fusion model);
* :mod:`.layers`, blocks used by several models: ``grouped_transformer`` (the grouped MulT encoder of DMD,
  DHMD and MulT, its folded-weight cache and dropout fields), its ``attention_kernels`` and ``grouped_config``
  (the encoder hyper-parameters DMD's and MulT's configs extend, and the models' shared inference cache);
  ``mmsa_subnets`` (the unimodal branches of LF-DNN, TFN and LMF); ``text_encoder`` (BERT); ``masking``
  (valid-step masks and lengths); ``pooling`` (masked mean, LSTM last state); ``norms`` (``BatchNorm``).

Modality names: batch and spec keys ``text``, ``audio``, ``vision`` (:data:`emodistill.spec.MODALITIES`);
one-letter names ``l``, ``a``, ``v`` inside DMD and MulT and in interpretation keys
(:data:`emodistill.spec.SHORT_NAMES`).

Dimension legend used in docstrings and shape comments throughout the package:

* ``B`` batch; ``N`` samples of a whole split;
* ``T`` time steps (per modality ``T_l``, ``T_a``, ``T_v``; ``T'`` after a temporal convolution; ``T_q``,
  ``T_k`` query and key lengths in attention);
* ``D`` input feature dim (``D_l``, ``D_a``, ``D_v``);
* ``d`` DMD / MulT model width; ``E`` width of one grouped encoder (``d``, or ``2d`` for the mem
  encoders), ``h`` its attention heads, ``hd`` the head width;
* ``G`` members of a grouped encoder family (``g`` of them in one batched run), ``L`` its layers;
* ``H`` hidden width of a baseline branch (``H_l``, ``H_a``, ``H_v``);
* ``M`` modalities; ``K`` dictionary atoms (DHMD); ``r`` LMF's rank;
* a GD-Unit scores 6 directed edges for three modalities (order
  :data:`~emodistill.models.dmd.gd_unit.EDGE_NAMES`); loss formulas write the ``(B, 6)`` edge weights
  as ``E[b, x]``.
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
from emodistill.models.registry import create_model, list_models, load_checkpoint, register_model

__all__ = ["create_model", "list_models", "load_checkpoint", "register_model"]
