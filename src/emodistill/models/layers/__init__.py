"""Building blocks shared by several models: the grouped MulT transformer encoder and its kernels
(DMD, MulT), MMSA's unimodal subnets (TFN, LMF, LF-DNN), the BERT text encoder, norms and pooling."""
