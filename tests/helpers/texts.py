"""Small text classification sets for tests: three topics, sentences built from topic words."""

from __future__ import annotations

import csv
import random
from pathlib import Path

TOPICS = {
    "sport": (["the striker", "the goalkeeper", "the coach", "the home team", "the tennis champion", "the runner",
               "the referee", "the captain"],
              ["scored in the final minute", "won the league title", "missed a penalty kick", "trained before the match",
               "broke the world record", "celebrated with the fans", "was sent off in the derby",
               "lifted the trophy at the stadium"]),
    "food": (["the chef", "my grandmother", "the bakery", "the restaurant", "the street vendor", "the pastry cook",
              "our neighbour", "the cookbook"],
             ["roasted garlic with rosemary", "baked sourdough bread at dawn", "served a spicy tomato soup",
              "fried the onions in butter", "simmered the lentil stew", "whisked eggs for an omelette",
              "made fresh pasta with basil", "grilled salmon with lemon"]),
    "tech": (["the laptop", "the compiler", "the database server", "the smartphone", "the graphics card",
              "the operating system", "the network router", "the software update"],
             ["crashed after the firmware upgrade", "needs more memory to run", "reported a segmentation fault",
              "encrypts the disk with a password", "drops packets under heavy load", "installed a security patch",
              "runs the kernel in a virtual machine", "overheated while rendering video"]),
}


def topic_rows(per_class: int, *, seed: int = 0) -> list[tuple[str, str, str]]:
    """(id, text, label) rows, `per_class` distinct sentences per topic, in a shuffled order."""
    rng = random.Random(seed)
    rows = []
    for label, (subjects, verbs) in TOPICS.items():
        pairs = [(s, v) for s in subjects for v in verbs]
        rng.shuffle(pairs)
        for s, v in pairs[:per_class]:
            rows.append((f"{label}-{len(rows)}", f"{s[0].upper()}{s[1:]} {v}.", label))
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows, header=("id", "text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path
