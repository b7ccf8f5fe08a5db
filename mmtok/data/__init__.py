"""Dataset prep: media -> one token vocabulary -> Parquet / WebDataset shards."""

from mmtok.data.dataset import TokenSequenceDataset
from mmtok.data.prep import PrepJob, run_prep
from mmtok.data.vocab import Vocabulary

__all__ = ["PrepJob", "TokenSequenceDataset", "Vocabulary", "run_prep"]
