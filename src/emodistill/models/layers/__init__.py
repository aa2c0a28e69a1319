"""Building blocks shared by several models: the grouped MulT transformer encoder and its kernels
(``grouped_transformer``, ``attention_kernels``) with the hyper-parameters of the models on it
(``grouped_config``: DMD, DHMD, MulT), MMSA's unimodal subnets (``mmsa_subnets``: LF-DNN, TFN, LMF), the
BERT text encoder (``text_encoder``), valid-step masks (``masking``), pooling over valid steps
(``pooling``) and normalisation (``norms``)."""
