"""``python -m dereverb.representations --plot out.png``: draw one utterance in every representation."""

import sys

from dereverb.representations import main

sys.exit(main())
