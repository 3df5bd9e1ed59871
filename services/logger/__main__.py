import sys

from services.logger.service import main

sys.exit(main())
