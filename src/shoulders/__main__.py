"""`python -m shoulders` (and `accelerate launch -m shoulders train ...`)."""
import sys

from shoulders.cli.main import main

sys.exit(main())
