"""Everything that makes (reverberant, clean) pairs: rooms and RIR banks, speech corpora, pairs,
the DataModule, and the item sources of evaluation.

Import from the module that holds a name (nothing is re-exported here, so importing one light
module never pulls in the others; only ``datamodule`` imports Lightning):

- :mod:`~dereverb.data.rooms`: ``RoomSampler``, ``RoomSpec``, ``simulate_rir``, ``estimate_t60``,
  ``drr``, ``direct_path_index``, ``RirError`` (numpy; pyroomacoustics when simulating).
- :mod:`~dereverb.data.rir_bank`: ``RirBank`` (parallel simulation, cache, measured folders).
- :mod:`~dereverb.data.speech`, :mod:`~dereverb.data.synthetic_speech`: speech sources.
- :mod:`~dereverb.data.pairs`: ``make_pair``, ``make_pairs_torch``, ``ReverbPairDataset``,
  ``EpochSampler``.
- :mod:`~dereverb.data.datamodule`: ``DereverbDataModule`` (Lightning).
"""
