import sys

from services.sequencer.service import main

sys.exit(main())
