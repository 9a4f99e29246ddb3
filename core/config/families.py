"""Every family's data and model sections, in one place: each family module (detection,
segmentation, word embeddings, sentiment, inference, BERT, recommenders, pretrained vision
networks) exports its own tuples, joined here into the schema's unions (`core.config.data`,
`core.config.models`)."""

from __future__ import annotations

from .bert import BERT_DATA, BERT_MODELS
from .detection import DETECTION_DATA, DETECTION_MODELS
from .image_folder import IMAGE_FOLDER_DATA
from .nli import NLI_DATA, NLI_MODELS
from .recsys import RECSYS_DATA, RECSYS_MODELS
from .segmentation import SEGMENTATION_DATA, SEGMENTATION_MODELS
from .sentiment import SENTIMENT_DATA, SENTIMENT_MODELS
from .torchvision import TORCHVISION_MODELS
from .word2vec import WORD2VEC_DATA, WORD2VEC_MODELS

FAMILY_DATA: tuple = (*RECSYS_DATA, *IMAGE_FOLDER_DATA, *DETECTION_DATA, *SEGMENTATION_DATA, *WORD2VEC_DATA,
                      *SENTIMENT_DATA, *NLI_DATA, *BERT_DATA)
FAMILY_MODELS: tuple = (*RECSYS_MODELS, *DETECTION_MODELS, *SEGMENTATION_MODELS, *TORCHVISION_MODELS, *WORD2VEC_MODELS,
                        *SENTIMENT_MODELS, *NLI_MODELS, *BERT_MODELS)
