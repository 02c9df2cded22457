"""Write examples/requests.jsonl: 1,000 chat requests in the three accepted line forms."""

from __future__ import annotations

import json
from pathlib import Path

MODEL = "Llama-3.3-70B-Instruct"
TOPICS = [
    "AI",
    "machine learning",
    "neural networks",
    "batch processing",
    "rate limits",
    "Redis",
    "Celery",
    "object storage",
    "tokenization",
    "embeddings",
]


def main() -> None:
    path = Path(__file__).resolve().parent.parent / "examples" / "requests.jsonl"
    path.parent.mkdir(exist_ok=True)
    with path.open("w") as f:
        for i in range(1000):
            question = f"In one sentence, what is {TOPICS[i % len(TOPICS)]}? (#{i})"
            messages = [{"role": "user", "content": question}]
            if i % 3 == 0:  # OpenAI form
                line = {
                    "custom_id": f"req-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": MODEL, "messages": messages, "max_tokens": 64},
                }
            elif i % 3 == 1:  # source-document form
                line = {"custom_id": f"req-{i}", "params": {"model": MODEL, "messages": messages, "max_tokens": 64}}
            else:  # bare form, with a custom_id so every line is easy to find
                line = {"custom_id": f"req-{i}", "model": MODEL, "messages": messages, "max_tokens": 64}
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
