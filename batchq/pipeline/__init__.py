"""The data flow, one module a stage, free of Celery so each stage can be run and tested as a plain function.

    intake    validate the input file, index its lines, start the batch
    request   one line: claim, rate limit, upstream call, retries, its outcome recorded once
    finalize  stream the outcomes into the output and error files, end the batch
    sweep     the safety net: re-send what was lost, fill stopped batches, finalize stuck ones
    results   a batch's result lines in input order (for the API)

``context`` holds what every stage needs (settings, Redis, the store, the limiters), built once per process.
The Celery tasks in ``workers/`` are thin shells around these functions.
"""
