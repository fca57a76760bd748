"""Everything that makes (reverberant, clean) pairs: rooms and RIR banks, speech corpora, pairs,
the DataModule, and the item sources of evaluation."""
