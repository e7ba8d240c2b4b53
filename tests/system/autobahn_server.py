"""Autobahn|Testsuite's fuzzing server (the ``kosoku`` package) in a process of its own.

``python tests/system/autobahn_server.py [CASE-OR-GLOB ...]`` prints ``PORT <n>``, serves the cases
(all but the excluded groups) until the client under test has run them and asked for the
report, then prints one JSON line: each case's id and verdicts. kosoku runs on asyncio, the
client under test on Trio: hence the second process.
"""

from __future__ import annotations

import asyncio
import json
import sys

from kosoku import FailureError, run_fuzzingserver

#: 9.*: performance (messages up to 16 MB, minutes); 12.* and 13.*: permessage-deflate
#: (about 6 minutes on 2 cores; run by hand, see tests/system/test_autobahn.py).
EXCLUDED = ["9.*", "12.*", "13.*"]


async def main(cases: list[str]) -> None:
    async with run_fuzzingserver(
        cases=cases or None, exclude_cases=None if cases else EXCLUDED, port=0
    ) as server:
        print("PORT", server.port, flush=True)
        try:
            results = await server.get_result()
        except FailureError as failure:
            results = failure.results
    report = [
        {
            "case": result.case_id,
            "behavior": result.behavior.value,
            "close": result.behavior_close.value,
        }
        for result in results
    ]
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
