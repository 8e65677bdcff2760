"""Reading the JSON lines outputs the pipelines write."""

import glob
import json


def read_jsonl(pattern):
    """Every record of the files matching `pattern`, in file-name order."""
    records = []
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8") as handle:
            records.extend(json.loads(line) for line in handle if line.strip())
    return records
