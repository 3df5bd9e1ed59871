import sys

from services.verifier.service import main

sys.exit(main())
