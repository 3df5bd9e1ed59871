import sys

from services.backtest.cli import main

sys.exit(main())
