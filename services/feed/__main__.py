import sys

from services.feed.service import main

sys.exit(main())
