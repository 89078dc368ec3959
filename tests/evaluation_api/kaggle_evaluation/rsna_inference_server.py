"""A local stand-in of the competition's inference server, in its shape:
`RSNAInferenceServer(predict)`, `serve()` on Kaggle's rerun,
`run_local_gateway()` otherwise. The gateway calls predict once per test
series (each folder of the competition's test folder, GATEWAY_TEST_DIR),
checks that every answer is one row without the row-ID column, and writes
the submission it builds (SeriesInstanceUID, then the answer's columns) to
the working folder."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

ROW_ID = "SeriesInstanceUID"  # the gateway adds it to each answer


class RSNAInferenceServer:
    def __init__(self, predict):
        self.predict = predict

    def serve(self):
        raise RuntimeError("serve() runs on Kaggle's rerun only")

    def run_local_gateway(self):
        competition = Path(__file__).resolve().parents[1]
        folders = sorted(p for p in (competition / os.environ["GATEWAY_TEST_DIR"]).iterdir())
        rows = []
        for folder in folders:
            answer = self.predict(str(folder))
            if not isinstance(answer, pd.DataFrame) or len(answer) != 1 or ROW_ID in answer:
                raise ValueError(
                    f"predict({folder.name}) must return one row without {ROW_ID}. "
                    f"Received: {answer!r}"
                )
            rows.append({ROW_ID: folder.name, **answer.iloc[0].to_dict()})
        out = Path(os.environ.get("KAGGLE_ROOT", "/kaggle")) / "working" / "submission.csv"
        pd.DataFrame(rows).to_csv(out, index=False)
        print(f"gateway: {len(rows)} series answered")
