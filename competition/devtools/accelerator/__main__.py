"""One backend's measurements, in a process of its own (KERAS_BACKEND set):
python -m competition.devtools.accelerator SPEC.json OUT.json"""

import sys

from competition.backend import isolate

isolate()  # before Keras: the other backends' frameworks stay out of this process

from competition.devtools.accelerator.measure import main  # noqa: E402

sys.exit(main(sys.argv[1], sys.argv[2]))
