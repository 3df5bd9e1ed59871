import sys

from services.router.service import main

sys.exit(main())
