"""Dataset prep: media (and text) -> one token vocabulary -> Parquet / WebDataset / Megatron
shards; ``decode_row`` maps a row back to its text and media tokens."""

from mmtok.data.dataset import TokenSequenceDataset
from mmtok.data.decode import MediaSegment, TextSegment, decode_row
from mmtok.data.prep import PrepJob, run_prep
from mmtok.data.vocab import Vocabulary

__all__ = ["MediaSegment", "PrepJob", "TextSegment", "TokenSequenceDataset", "Vocabulary",
           "decode_row", "run_prep"]  # fmt: skip
