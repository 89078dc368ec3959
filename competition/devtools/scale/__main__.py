"""`python -m competition.devtools.scale STAGE ARGS`: one stage in this process."""

import json
import sys

from competition.devtools.scale.stages import child

if __name__ == "__main__":
    child(sys.argv[1], json.loads(sys.argv[2]))
