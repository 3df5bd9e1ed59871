import sys

from services.execution.service import main

sys.exit(main())
