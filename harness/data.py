"""Task data: built-in synthetic generators, local files or a Hugging Face dataset.

Whatever the source, a task becomes a `TaskData` with rows in one shape per task type
(seq_cls: {"text", "label"}; causal_lm: {"prompt", "answer"}), labels always strings,
and a fingerprint of the rows so that a result can name exactly the data it saw (a hub
dataset's, with the commit its revision resolved to), and `overlap`: how many validation
and test inputs repeat a train input (such rows measure recall, not generalisation; the
built-in generators make none).  `check_task` validates a suite's task cheaply (file headers, names, metric) before any
model is loaded; `encode` and `collate` turn rows into token ids and padded tensors.

The synthetic generators are small languages written for this harness.  They are meant
to be learnable in ~100 steps by a small pretrained encoder, yet not by keyword
spotting (negation, contrast clauses, distractor words), so that methods of different
capacity separate for real reasons.  Measured once with all-MiniLM-L6-v2, 2000 training
rows, 100 steps of batch 16, test accuracy: sentiment: full fine-tuning 0.98, LoRA r16
0.91 and r4 0.56 at lr 1e-3 (0.96 at 3e-3), bag-of-words logistic regression 0.55-0.60;
topic: full 1.00, LoRA r4 0.985, r1 0.85, bag-of-words 0.93.  `twist` (the quickstart's) is
built so that the words alone carry no label in most rows: a frozen encoder with a trained
head (head_only) reaches about 0.6, LoRA r8 and full fine-tuning 0.99-1.00 at a good lr.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from harness.errors import SuiteError, did_you_mean
from harness.metrics import METRICS
from harness.suite import DataSpec, TaskSpec

if TYPE_CHECKING:
    import torch

SPLITS = ("train", "validation", "test")
FILE_TYPES = (".csv", ".json", ".jsonl", ".parquet")


@dataclass(frozen=True)
class TaskData:
    train: tuple[dict, ...]
    validation: tuple[dict, ...]
    test: tuple[dict, ...]
    label_names: tuple[str, ...]  # seq_cls: sorted distinct train labels; () for causal_lm
    # sha256 (first 16 hex) of the normalised rows of all splits; for a hub dataset, of the rows
    # and the commit they were read from
    fingerprint: str
    overlap: dict[str, int] | None = None  # `overlap(...)`: validation / test rows whose input is also in train
    source: str | None = None  # hub: "hub:<id>[:<config>]@<resolved commit>"; None for synthetic and files


@dataclass(frozen=True)
class Generator:
    """A built-in synthetic task: `make(rng)` returns one row in the task type's shape.

    `group(row)` names the rows that must land in the same split (default: the row's
    input as `overlap_key` sees it), so that no validation or test item, nor an
    equivalent form of it (for `addition`, the commuted sum), is ever a train item.
    """

    name: str
    task_type: str
    make: Callable[[random.Random], dict]
    description: str
    capacity: int | None = None  # distinct rows it can make, where that bounds the split sizes
    group: Callable[[dict], str] | None = None


# --------------------------------------------------------------------------- sentiment

# One adjective per clause; polarity is the adjective's, flipped by a negator.  The
# tests re-derive every label from these lists, so keep nouns and fillers free of them.
_SENTIMENT_DOMAINS = {
    "product": {
        "nouns": ("the battery", "the screen", "the keyboard", "this blender", "the charger", "the camera",
                  "the vacuum cleaner", "the laptop", "the speaker", "the app", "the delivery", "the printer",
                  "this kettle", "the remote", "the mattress", "the washing machine"),
        "positive": ("reliable", "sturdy", "fast", "responsive", "durable", "intuitive", "quiet", "sleek",
                     "accurate", "comfortable", "lightweight"),
        "negative": ("unreliable", "flimsy", "slow", "laggy", "fragile", "confusing", "noisy", "clunky",
                     "inaccurate", "uncomfortable", "overpriced"),
    },
    "movie": {
        "nouns": ("the plot", "the acting", "the soundtrack", "the ending", "the script", "the lead actor",
                  "the dialogue", "the pacing", "the cinematography", "this film", "the sequel", "the villain",
                  "the opening scene", "the final act", "the documentary"),
        "positive": ("gripping", "funny", "moving", "clever", "convincing", "thrilling", "beautiful", "original",
                     "touching", "engaging"),
        "negative": ("boring", "tedious", "forgettable", "predictable", "wooden", "clumsy", "pointless",
                     "bloated", "shallow", "confusing"),
    },
    "restaurant": {
        "nouns": ("the pasta", "the soup", "the service", "the dessert", "the waiter", "the menu", "the steak",
                  "the coffee", "the atmosphere", "the bread", "the curry", "this place", "the salad",
                  "the pizza", "the wine list"),
        "positive": ("fresh", "tasty", "friendly", "generous", "cozy", "attentive", "delicious", "flavorful",
                     "prompt", "spotless"),
        "negative": ("stale", "bland", "rude", "stingy", "cramped", "greasy", "soggy", "overcooked", "dirty",
                     "overpriced", "slow"),
    },
}
_GENERAL_POSITIVE = ("good", "great", "excellent", "wonderful", "superb", "pleasant", "impressive", "solid",
                     "delightful", "fantastic", "lovely", "outstanding", "enjoyable", "satisfying", "brilliant",
                     "terrific", "decent", "charming")
_GENERAL_NEGATIVE = ("bad", "poor", "terrible", "awful", "disappointing", "mediocre", "dreadful", "weak",
                     "annoying", "unpleasant", "dull", "sloppy", "frustrating", "horrible", "lousy",
                     "underwhelming", "subpar", "miserable")
POSITIVE_WORDS = frozenset(_GENERAL_POSITIVE).union(*(d["positive"] for d in _SENTIMENT_DOMAINS.values()))
NEGATIVE_WORDS = frozenset(_GENERAL_NEGATIVE).union(*(d["negative"] for d in _SENTIMENT_DOMAINS.values()))
NEGATORS = frozenset({"not", "never", "hardly", "wasn't", "isn't", "didn't"})

_INTENSIFIERS = ("", "", "", "very ", "really ", "truly ", "extremely ", "incredibly ", "remarkably ",
                 "genuinely ", "quite ", "so ", "rather ")
_PLAIN_FRAMES = ("{s} was {i}{a}", "{s} is {i}{a}", "{s} felt {i}{a}", "{s} seemed {i}{a}", "I found {s} {i}{a}",
                 "{s} turned out to be {i}{a}", "{s} looked {i}{a}")
# no intensifier under negation: "not very good" is a hedge, "not good at all" is a verdict
_NEGATED_FRAMES = ("{s} was not {a}", "{s} wasn't {a}", "{s} was never {a}", "{s} is not {a}", "{s} isn't {a}",
                   "{s} did not feel {a}", "{s} didn't seem {a}", "I did not find {s} {a}", "{s} was hardly {a}",
                   "{s} was not {a} at all", "{s} never felt {a}")
_OPENERS = ("", "", "", "", "Honestly, ", "Overall, ", "To be fair, ", "In short, ", "Frankly, ", "All in all, ")
_CLOSERS = ("", "", "", " overall", " in my opinion", " if you ask me", " for the price", " this time")
_CONTRASTS = (", but ", "; however, ", ", yet ")
_AGREEMENTS = (", and ", "; also, ", ", and on top of that, ")


def _sentiment_clause(rng: random.Random, domain: dict, positive: bool, noun: str) -> str:
    negated = rng.random() < 0.35
    pool = "positive" if positive != negated else "negative"
    general = _GENERAL_POSITIVE if pool == "positive" else _GENERAL_NEGATIVE
    adjective = rng.choice(domain[pool] + general)
    if negated:
        return rng.choice(_NEGATED_FRAMES).format(s=noun, a=adjective)
    return rng.choice(_PLAIN_FRAMES).format(s=noun, i=rng.choice(_INTENSIFIERS), a=adjective)


def _sentiment_row(rng: random.Random) -> dict:
    label = rng.choice(("negative", "positive"))
    positive = label == "positive"
    domain = _SENTIMENT_DOMAINS[rng.choice(sorted(_SENTIMENT_DOMAINS))]
    first, second = rng.sample(domain["nouns"], 2)
    clause = lambda pos, noun: _sentiment_clause(rng, domain, pos, noun)  # noqa: E731
    form = rng.choices(("simple", "contrast", "although", "even_though", "agreement"), (30, 30, 12, 10, 18))[0]
    if form == "simple":
        text = rng.choice(_OPENERS) + clause(positive, first) + rng.choice(_CLOSERS)
    elif form == "contrast":  # the clause after the connective decides
        text = clause(not positive, first) + rng.choice(_CONTRASTS) + clause(positive, second)
    elif form == "although":  # the main clause (second) decides
        text = "although " + clause(not positive, first) + ", " + clause(positive, second)
    elif form == "even_though":  # the main clause comes first and decides
        text = clause(positive, first) + ", even though " + clause(not positive, second)
    else:
        text = clause(positive, first) + rng.choice(_AGREEMENTS) + clause(positive, second)
    return {"text": text[0].upper() + text[1:] + ".", "label": label}


# --------------------------------------------------------------------------- topic

# The action phrase always carries the topic; a subject may be generic ("the team") and a
# distractor clause may name another topic, so that spotting one keyword is not enough.
TOPICS = {
    "business": {
        "subjects": ("the retailer", "the startup", "the bank", "shareholders", "the chief executive",
                     "the carmaker", "analysts", "the insurer", "the supermarket chain", "the payments company"),
        "actions": ("reported record quarterly profits", "cut its earnings forecast", "announced a merger with a rival",
                    "raised prices for the third time", "laid off two hundred workers", "issued new shares",
                    "missed revenue expectations", "agreed to a takeover bid", "paid a larger dividend",
                    "renegotiated its debt with lenders", "opened forty new stores", "lost market share to cheaper brands"),
        "mentions": ("the stock market", "interest rates", "quarterly earnings", "a hostile takeover", "inflation",
                     "the new trade tariffs", "a bankruptcy filing"),
    },
    "science": {
        "subjects": ("the researchers", "the laboratory", "astronomers", "the biologist", "the physics department",
                     "a chemist", "the space agency", "geologists", "the university lab", "climate scientists"),
        "actions": ("discovered a new species of beetle", "measured the mass of a distant planet",
                    "published a study on gene editing", "detected faint radio signals from a galaxy",
                    "sequenced the genome of a rare fungus", "tested a new vaccine in mice",
                    "observed a comet passing near the sun", "built a more precise atomic clock",
                    "found fossils of an early mammal", "recorded unusual seismic activity",
                    "synthesised a stronger polymer", "mapped neurons in a fruit fly brain"),
        "mentions": ("a peer-reviewed paper", "the telescope", "a clinical trial", "the particle accelerator",
                     "a new element", "the lab results", "a fossil discovery"),
    },
    "sports": {
        "subjects": ("the striker", "the coach", "the home side", "the goalkeeper", "the captain", "the sprinter",
                     "the tennis champion", "the referee", "the rookie quarterback", "the cycling team"),
        "actions": ("scored twice in the final minutes", "won the championship on penalties",
                    "broke the national record in the relay", "was sent off after a late tackle",
                    "signed a new three-year contract with the club", "reached the semi-final at Wimbledon",
                    "lost the derby in front of a full stadium", "trained hard ahead of the playoffs",
                    "recovered from a knee injury before the season", "finished second in the marathon",
                    "was suspended for two matches", "hit a home run in the ninth inning"),
        "mentions": ("the league table", "the playoffs", "the transfer window", "a penalty shootout",
                     "the world cup", "the final whistle", "a doping scandal"),
    },
    "travel": {
        "subjects": ("the tourists", "the backpacker", "the airline", "the cruise ship", "the hotel chain",
                     "the tour guide", "holidaymakers", "the travel agency", "the ferry operator", "the resort"),
        "actions": ("cancelled flights because of the storm", "opened a new route to the islands",
                    "offered cheaper tickets for the summer", "welcomed a record number of visitors",
                    "booked a week in a mountain cabin", "added a night train to the coast",
                    "delayed boarding for three hours", "renovated its beachfront rooms",
                    "recommended a walking tour of the old town", "lost luggage at the airport",
                    "introduced a new passport check at the border", "sold out every room for the festival"),
        "mentions": ("the holiday season", "airport queues", "a luggage fee", "the passport office",
                     "a beach resort", "hotel prices", "a missed connection"),
    },
}
_GENERIC_SUBJECTS = ("the team", "the group", "officials", "the organisers", "a spokesperson", "the committee",
                     "the company", "a local family")
_TOPIC_OPENERS = ("", "", "", "On Monday, ", "Earlier this week, ", "According to a local report, ",
                  "In a surprise move, ", "For the first time in years, ", "Late on Friday, ", "As expected, ",
                  "Once again, ")
_TOPIC_CLOSERS = ("", "", "", " this week", " after months of planning", " earlier than expected",
                  " for the second year in a row", " according to people familiar with the matter")
_MENTIONS = (" despite all the talk about {m}", ", a story that pushed {m} off the front page",
             " while most people were focused on {m}", ", shortly after reports about {m}")
# another topic's whole event in a subordinate clause, before or after the main one: word
# counts now tie, and only the sentence structure says which clause is the news
_EVENTS_AFTER = (", just days after {e}", ", shortly after {e}", " while {e}", ", even as {e}")
_EVENTS_BEFORE = ("Just days after {e}, ", "Shortly after {e}, ", "While {e}, ", "Even as {e}, ")


def _topic_row(rng: random.Random) -> dict:
    label = rng.choice(sorted(TOPICS))
    topic = TOPICS[label]
    other = TOPICS[rng.choice([t for t in sorted(TOPICS) if t != label])]
    subject = rng.choice(topic["subjects"] if rng.random() < 0.55 else _GENERIC_SUBJECTS)
    main = subject + " " + rng.choice(topic["actions"]) + rng.choice(_TOPIC_CLOSERS)
    event = rng.choice(other["subjects"]) + " " + rng.choice(other["actions"])
    kind = rng.random()
    if kind < 0.2:
        text = main + rng.choice(_MENTIONS).format(m=rng.choice(other["mentions"]))
    elif kind < 0.3:
        text = main + rng.choice(_EVENTS_AFTER).format(e=event)
    elif kind < 0.4:
        text = rng.choice(_EVENTS_BEFORE).format(e=event) + main
    else:
        text = rng.choice(_TOPIC_OPENERS) + main
    return {"text": text[0].upper() + text[1:] + ".", "label": label}


# --------------------------------------------------------------------------- twist

# Common, strongly polar adjectives only: the difficulty is meant to be the sentence's
# structure, not a rare word.  The tests re-derive every label from these lists, so keep
# the nouns and the connectives free of them and of the negators.
TWIST_POSITIVE = ("good", "great", "excellent", "wonderful", "amazing", "fantastic", "superb", "lovely", "perfect",
                  "brilliant")
TWIST_NEGATIVE = ("bad", "terrible", "awful", "horrible", "poor", "dreadful", "disappointing", "mediocre", "lousy",
                  "dull")
TWIST_NOUNS = ("the soup", "the service", "the pasta", "the dessert", "the staff", "the coffee", "the room", "the view",
               "the plot", "the acting", "the music", "the ending", "the screen", "the battery", "the camera",
               "the price", "the hotel", "the bed", "the food", "the wine", "the show", "the book", "the game",
               "the trip")
TWIST_NEGATORS = frozenset({"not", "wasn't", "isn't"})
_TWIST_INTENSIFIERS = ("", "", "", "very ", "really ", "truly ", "quite ", "so ")
_TWIST_VERBS = ("was", "is", "felt", "seemed", "looked")
_TWIST_NEGATED = ("was not", "is not", "wasn't", "isn't")
# form -> weight; which clause decides: simple (the only one), but (the second: after
# the connective), although (the second: the main clause), even_though (the first: the
# main clause), and (both: they agree)
TWIST_FORMS = {"simple": 20, "but": 35, "although": 15, "even_though": 15, "and": 15}


def _twist_clause(rng: random.Random, noun: str, positive: bool) -> str:
    """One clause whose sentiment is `positive`: a polar adjective, negated 30% of the time."""
    negated = rng.random() < 0.3
    adjective = rng.choice(TWIST_POSITIVE if positive != negated else TWIST_NEGATIVE)
    if negated:  # no intensifier under negation: "not very good" is a hedge
        return f"{noun} {rng.choice(_TWIST_NEGATED)} {adjective}"
    return f"{noun} {rng.choice(_TWIST_VERBS)} {rng.choice(_TWIST_INTENSIFIERS)}{adjective}"


def _twist_row(rng: random.Random) -> dict:
    """Compositional sentiment that a bag of words cannot read, nor a frozen encoder's [CLS].

    Every sentence is one clause ("the soup was great", "the soup was not great") or two
    clauses about two different nouns joined by a connective, and the label is the
    sentiment of the deciding clause: the one after "but", the main clause of
    "although ..., ..." (second) and of "..., even though ..." (first), or either one of
    two that agree ("..., and ..."); a clause's sentiment is its adjective's polarity,
    flipped by "not" / "n't".  In the contrast forms (65% of rows) the two clauses have
    opposite sentiment, so both polarities occur and only the connective and the order
    of the clauses say which one counts; negation (30% of clauses) makes the adjective's
    own polarity a coin flip too.  Test accuracy with all-MiniLM-L6-v2, 2000 training rows,
    batch 16 (1000 test rows; data seed 0, training seed 0 unless said): at 80 steps (the
    quickstart) head_only 0.60-0.64 over 3 seeds, LoRA r8 0.66 at lr 1.5e-4 and 1.00 at
    8.5e-3, full fine-tuning 0.88 at 1.1e-5 and 1.00 at 1.1e-4 and 2.8e-4; at 60 steps
    LoRA r8 0.97 at 1.5e-3 and 0.99 at 2e-3, LoRA r8 over NF4 1.00 at 5e-3, full 0.91 at
    2e-5.  So the adapted encoders solve it and the frozen one cannot, and the lr matters.
    """
    label = rng.choice(("negative", "positive"))
    positive = label == "positive"
    first, second = rng.sample(TWIST_NOUNS, 2)
    form = rng.choices(tuple(TWIST_FORMS), tuple(TWIST_FORMS.values()))[0]
    if form == "simple":
        text = _twist_clause(rng, first, positive)
    elif form == "but":
        text = _twist_clause(rng, first, not positive) + ", but " + _twist_clause(rng, second, positive)
    elif form == "although":
        text = "although " + _twist_clause(rng, first, not positive) + ", " + _twist_clause(rng, second, positive)
    elif form == "even_though":
        text = _twist_clause(rng, first, positive) + ", even though " + _twist_clause(rng, second, not positive)
    else:
        text = _twist_clause(rng, first, positive) + ", and " + _twist_clause(rng, second, positive)
    return {"text": text[0].upper() + text[1:] + ".", "label": label}


# --------------------------------------------------------------------------- causal LM


def _addition_row(rng: random.Random) -> dict:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return {"prompt": f"Question: What is {a} + {b}?\nAnswer:", "answer": str(a + b)}


def _addition_pair(row: dict) -> str:
    """The unordered pair of a sum: 23 + 45 and 45 + 23 are one item, kept in one split."""
    a, b = sorted(int(x) for x in re.findall(r"\d+", row["prompt"])[:2])
    return f"{a}+{b}"


COPY_WORDS = ("apple", "river", "candle", "garden", "pencil", "window", "tiger", "orange", "bridge", "cloud",
              "forest", "button", "rocket", "coffee", "island", "mirror", "piano", "basket", "lemon", "ladder",
              "castle", "wallet", "blanket", "dragon", "engine", "feather", "guitar", "hammer", "jacket", "kettle",
              "lantern", "marble", "needle", "onion", "parrot", "quilt", "rabbit", "saddle", "tomato", "umbrella",
              "violin", "walnut", "yogurt", "zebra", "anchor", "barrel", "carrot", "desert", "falcon", "glove",
              "harbor", "iceberg", "jungle", "kitten", "meadow", "napkin", "oyster", "pepper", "riddle", "statue",
              "tunnel", "valley", "wizard", "bottle")
_COPY_PROMPTS = ("Repeat: {w}\nAnswer:", "Repeat the word: {w}\nAnswer:", "Say it back: {w}\nAnswer:")


def _copy_word_row(rng: random.Random) -> dict:
    word = rng.choice(COPY_WORDS)
    return {"prompt": rng.choice(_COPY_PROMPTS).format(w=word), "answer": word}


SYNTHETIC: dict[str, Generator] = {
    g.name: g
    for g in (
        Generator("sentiment", "seq_cls", _sentiment_row,
                  "product/movie/restaurant reviews with negation, contrast ('X but Y') and intensifiers; "
                  "labels negative/positive"),
        Generator("topic", "seq_cls", _topic_row,
                  "news-like sentences about business/science/sports/travel, some with a distractor from another topic"),
        Generator("twist", "seq_cls", _twist_row,
                  "compositional sentiment: two clauses of opposite sentiment joined by but / although / even though "
                  "(the connective and the clause order say which decides), scoped negation; labels negative/positive"),
        Generator("addition", "causal_lm", _addition_row, "'Question: What is 23 + 45?\\nAnswer:' -> '68' (two-digit operands)",
                  capacity=90 * 90, group=_addition_pair),
        Generator("copy_word", "causal_lm", _copy_word_row, "'Repeat: apple\\nAnswer:' -> 'apple' (tiny-model tests)",
                  capacity=len(COPY_WORDS) * len(_COPY_PROMPTS)),
    )
}


def _synthesize(spec: DataSpec) -> dict[str, list[dict]]:
    """Distinct rows drawn from one seeded stream: test first, then validation, then train.

    Test first so that the test set of a seed does not move when n_train changes; every
    row is new, and a row whose group (`Generator.group`) already belongs to another
    split is passed over, so no item - nor its commuted sum - is in two splits.
    """
    gen = SYNTHETIC[spec.generator]
    rng = random.Random(f"{gen.name}/{spec.seed}")  # str seeds hash with sha512: stable across processes
    group = gen.group or overlap_key
    seen: set[str] = set()
    owner: dict[str, str] = {}  # group -> the split it went to
    sizes = {"test": spec.n_test, "validation": spec.n_validation, "train": spec.n_train}
    total = sum(sizes.values())
    if gen.capacity is not None and total > gen.capacity:
        raise ValueError(f"synthetic generator {gen.name!r} can make at most {gen.capacity} distinct rows; "
                         f"{total} were asked for (n_train + n_validation + n_test)")
    out: dict[str, list[dict]] = {}
    budget = 200 * total + 10_000
    for split, n in sizes.items():
        rows: list[dict] = []
        while len(rows) < n:
            if budget == 0:
                raise ValueError(f"synthetic generator {gen.name!r} ran out of distinct rows after {len(seen)}")
            budget -= 1
            row = gen.make(rng)
            key = json.dumps(row, sort_keys=True)
            if key not in seen and owner.setdefault(group(row), split) == split:
                seen.add(key)
                rows.append(row)
        out[split] = rows
    return out


# --------------------------------------------------------------------------- files and hub


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _read_records(path: Path) -> list[dict] | None:
    """JSON / JSON Lines as parsed records (None for other types): no pandas type guessing."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):  # column-oriented
            return [dict(zip(data, values)) for values in zip(*data.values())]
        if isinstance(data, list) and all(isinstance(r, dict) for r in data):
            return data
        raise ValueError(f"{path}: expected a JSON list of objects or an object of equal-length lists")
    return None


def _read_table(path: Path) -> tuple[list[str], dict[str, list]]:
    """(column names, column -> values) for a .csv / .json / .jsonl / .parquet file."""
    import pandas as pd

    records = _read_records(path)
    if records is not None:
        names = list(dict.fromkeys(k for r in records for k in r))
        return names, {n: [r.get(n) for r in records] for n in names}
    if path.suffix.lower() == ".csv":
        # every cell as text: "007" stays "007", and labels need to be strings anyway
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        frame = pd.read_parquet(path)
    return [str(c) for c in frame.columns], {str(c): frame[c].tolist() for c in frame.columns}


def _read_column_names(path: Path) -> list[str]:
    """Column names from the header or first rows only, so that a suite check stays cheap."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        import pandas as pd

        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), None)
        return list(json.loads(first)) if first is not None else []
    return _read_table(path)[0]  # .json: a JSON document cannot be read in part


def _rows_from_columns(columns: dict[str, list], roles: Sequence[tuple[str, str]], source: str) -> list[dict]:
    """Rows keyed by role, every value a string; a missing value is an error naming the row."""
    values = []
    for role, column in roles:
        if column not in columns:
            raise ValueError(f"{source}: no column {column!r} for role {role!r}; columns: {', '.join(columns)}")
        values.append(columns[column])
    rows = []
    for i, cells in enumerate(zip(*values)):
        for (role, column), cell in zip(roles, cells):
            if _is_missing(cell):
                raise ValueError(f"{source}: row {i} has no value in column {column!r} (role {role!r})")
        rows.append({role: str(cell) for (role, _), cell in zip(roles, cells)})
    return rows


def _load_files(spec: DataSpec) -> dict[str, list[dict]]:
    files = dict(spec.files)
    return {split: _rows_from_columns(_read_table(Path(files[split]))[1], spec.columns, files[split]) for split in SPLITS}


_COMMIT = re.compile(r"[0-9a-f]{40}")


def resolve_hub_revision(spec: DataSpec) -> str | None:
    """The commit `spec.revision` (None: the default branch) points to now, as `datasets` resolves it.

    The dataset builder resolves it once (online: the hub's answer; offline: the cached
    copy's commit) and keys its cache by it; for a local folder it is a hash of the files.
    """
    import datasets

    return datasets.load_dataset_builder(spec.hub, spec.config, revision=spec.revision).hash


def _load_hub(spec: DataSpec) -> tuple[dict[str, list[dict]], str, str | None]:
    """The splits, read from the commit the revision resolved to; "hub:<id>[:<config>]@<commit>";
    and the commit (None where `datasets` names the data otherwise, e.g. a local folder by a hash).

    Resolving first and then loading every split from that commit means the name and the
    rows agree even if the branch moves meanwhile; the commit (not "main") is what a result
    records, so a rerun after the dataset changed can be told apart.
    """
    import datasets

    resolved = resolve_hub_revision(spec)
    commit = resolved if isinstance(resolved, str) and _COMMIT.fullmatch(resolved) else None
    revision = commit or spec.revision
    source = f"hub:{spec.hub}" + (f":{spec.config}" if spec.config else "") + f"@{resolved or spec.revision or 'main'}"
    out = {}
    for split, expr in spec.splits:
        ds = datasets.load_dataset(spec.hub, spec.config, revision=revision, split=expr)
        columns: dict[str, list] = {c: [] for c in ds.column_names}  # every name, for the error message
        for _, column in spec.columns:
            if column not in columns:
                continue  # _rows_from_columns names what is missing
            feature, values = ds.features[column], list(ds[column])
            # class ids -> their names, so labels read as words in reports
            columns[column] = [feature.int2str(v) for v in values] if isinstance(feature, datasets.ClassLabel) else values
        out[split] = _rows_from_columns(columns, spec.columns, f"{spec.hub} [{expr}]")
    return out, source, commit


# --------------------------------------------------------------------------- public


def fingerprint_rows(splits: dict[str, Sequence[dict]], commit: str | None = None) -> str:
    """sha256[:16] of the rows of all splits, and of the hub commit they were read from where there
    is one: the same rows at another commit are another dataset version."""
    rows = {s: list(splits[s]) for s in SPLITS}
    payload = json.dumps(rows if commit is None else {"rows": rows, "commit": commit}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def overlap_key(row: dict) -> str:
    """A row's input (text, or a causal LM's prompt) as duplicates are matched: surrounding
    whitespace stripped, inner runs of whitespace collapsed to one space, and case folded
    ("Apple  shares fall" = "apple shares fall"), since such copies are the same item to
    a reader and, for an uncased tokenizer, to the model.  Labels and answers are not part
    of it: the same input in train and test leaks whatever its label."""
    text = row["text"] if "text" in row else row["prompt"]
    return " ".join(str(text).split()).casefold()


def overlap(splits: dict[str, Sequence[dict]]) -> dict[str, int]:
    """How many validation / test rows have an input that is also a train input (`overlap_key`):
    {"train_validation": n, "train_test": m}.  Such rows are not held out: their score can be recall."""
    train = {overlap_key(r) for r in splits["train"]}
    return {f"train_{split}": sum(overlap_key(r) in train for r in splits[split]) for split in ("validation", "test")}


def overlap_text(counts: dict[str, int]) -> str:
    return (f"{counts['train_validation']} validation and {counts['train_test']} test row(s) repeat a train input "
            "(matched after collapsing whitespace and ignoring case)")


def load_task(task: TaskSpec, task_type: str) -> TaskData:
    """All three splits of a task, normalised to role-keyed rows with string labels."""
    spec = task.data
    source = commit = None
    if spec.source == "synthetic":
        splits = _synthesize(spec)
    elif spec.source == "files":
        splits = _load_files(spec)
    elif spec.source == "hub":
        splits, source, commit = _load_hub(spec)
    else:
        raise ValueError(f"task {task.name!r}: unknown data source {spec.source!r} (synthetic, files or hub)")
    for split in SPLITS:
        if not splits[split]:
            raise ValueError(f"task {task.name!r}: the {split} split is empty")
    label_names: tuple[str, ...] = ()
    if task_type == "seq_cls":
        label_names = tuple(sorted({r["label"] for r in splits["train"]}))
        for split in ("validation", "test"):
            unseen = sorted({r["label"] for r in splits[split]} - set(label_names))
            if unseen:
                raise ValueError(f"task {task.name!r}: {split} labels {unseen} never appear in train "
                                 f"(train labels: {list(label_names)}); the model cannot learn them")
    counts = overlap(splits)
    if spec.on_overlap == "error" and any(counts.values()):
        raise ValueError(f"task {task.name!r}: {overlap_text(counts)}, and its data.on_overlap is error")
    return TaskData(train=tuple(splits["train"]), validation=tuple(splits["validation"]), test=tuple(splits["test"]),
                    label_names=label_names, fingerprint=fingerprint_rows(splits, commit), overlap=counts, source=source)


def _check_metric(task: TaskSpec, task_type: str, suite_file: str, where: str) -> None:
    field = f"{where}.metric"
    fitting = [m for m in METRICS.values() if task_type in m.task_types]
    if task.metric not in METRICS:
        raise SuiteError(suite_file, field, "one of " + ", ".join(sorted(METRICS)), task.metric, did_you_mean(task.metric, METRICS))
    if task_type not in METRICS[task.metric].task_types:
        raise SuiteError(suite_file, field, f"a metric for {task_type} tasks ({', '.join(m.name for m in fitting)})", task.metric,
                         f"{task.metric} is for {', '.join(METRICS[task.metric].task_types)} tasks")


def _check_synthetic(spec: DataSpec, task_type: str, suite_file: str, where: str) -> None:
    field = f"{where}.data.synthetic"
    fitting = [g.name for g in SYNTHETIC.values() if g.task_type == task_type]
    gen = SYNTHETIC.get(spec.generator)
    if gen is None:
        raise SuiteError(suite_file, field, "one of the built-in generators (" + ", ".join(SYNTHETIC) + ")",
                         spec.generator, did_you_mean(spec.generator, SYNTHETIC))
    if gen.task_type != task_type:
        raise SuiteError(suite_file, field, f"a {task_type} generator ({', '.join(fitting)})", spec.generator,
                         f"{gen.name!r} makes {gen.task_type} data but the suite's task_type is {task_type}")
    total = spec.n_train + spec.n_validation + spec.n_test
    if gen.capacity is not None and total > gen.capacity:
        raise SuiteError(suite_file, f"{where}.data.n_train", f"n_train + n_validation + n_test <= {gen.capacity}", total,
                         f"{gen.name!r} can make only {gen.capacity} distinct rows, and splits never share a row")


def _check_files(spec: DataSpec, suite_file: str, where: str) -> None:
    for split, file in spec.files:
        field, path = f"{where}.data.files.{split}", Path(file)
        if not path.is_file():
            raise SuiteError(suite_file, field, "an existing data file", file, "paths are relative to the suite file")
        if path.suffix.lower() not in FILE_TYPES:
            raise SuiteError(suite_file, field, "a " + ", ".join(FILE_TYPES) + " file", file,
                             "convert it, e.g. with pandas: df.to_csv(...) or df.to_parquet(...)")
        try:
            names = _read_column_names(path)
        except Exception as exc:  # a broken file is the user's to fix: say which and why
            raise SuiteError(suite_file, field, f"a readable {path.suffix} file", file, f"{type(exc).__name__}: {exc}") from None
        for role, column in spec.columns:
            if column not in names:
                raise SuiteError(suite_file, f"{where}.data.columns.{role}", f"a column {column!r} in the {split} file {file}",
                                 f"<columns: {', '.join(names) or 'none'}>",
                                 did_you_mean(column, names) or f"set data.columns.{role} to the column that holds the {role}")


def _check_overlap(task: TaskSpec, task_type: str, suite_file: str, where: str) -> None:
    """`on_overlap: error`: the whole data is read (a hub dataset downloaded) and must not repeat a train input."""
    try:
        loaded = load_task(dataclasses.replace(task, data=dataclasses.replace(task.data, on_overlap="warn")), task_type)
    except ValueError as exc:  # unreadable or inconsistent data: the user's to fix, named here
        raise SuiteError(suite_file, f"{where}.data", "data that loads", f"<{exc}>") from None
    counts = loaded.overlap
    if any(counts.values()):
        train = {overlap_key(r) for r in loaded.train}
        row = next(r for r in loaded.validation + loaded.test if overlap_key(r) in train)
        example = " ".join(str(row["text"] if "text" in row else row["prompt"]).split())
        example = example if len(example) <= 60 else example[:59] + "…"
        shown = ", ".join(f"{n} in {k.removeprefix('train_')}" for k, n in counts.items() if n) + f"; e.g. {example!r}"
        raise SuiteError(suite_file, f"{where}.data.on_overlap", "no validation or test row repeating a train input "
                         "(on_overlap: error)", f"<{shown}>",
                         "remove those rows from validation/test or from train, or set on_overlap: warn to run anyway "
                         "with the counts logged and the task flagged in the report")


def check_task(task: TaskSpec, task_type: str, suite_file: str, where: str) -> None:
    """Everything about a task that can be checked without a model and without reading whole files;
    with `data.on_overlap: error`, also that no validation or test input is a train input (which
    reads the whole data)."""
    _check_metric(task, task_type, suite_file, where)
    if task.data.source == "synthetic":
        _check_synthetic(task.data, task_type, suite_file, where)
    elif task.data.source == "files":
        _check_files(task.data, suite_file, where)
    # hub: nothing else can be checked without downloading it
    if task.data.on_overlap == "error":
        _check_overlap(task, task_type, suite_file, where)


def encode(rows: Sequence[dict], tokenizer, task_type: str, max_length: int, label_names: tuple[str, ...]) -> list[dict]:
    """Token ids per row: seq_cls {input_ids, label, n_tokens}; causal_lm adds answer-only labels."""
    if task_type == "seq_cls":
        index = {name: i for i, name in enumerate(label_names)}
        out = []
        for row in rows:
            if row["label"] not in index:
                raise ValueError(f"label {row['label']!r} is not one of {list(label_names)}")
            ids = tokenizer(row["text"], truncation=True, max_length=max_length)["input_ids"]
            out.append({"input_ids": ids, "label": index[row["label"]], "n_tokens": len(ids)})
        return out
    if task_type != "causal_lm":
        raise ValueError(f"unknown task type {task_type!r}")
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token: the model could not learn where an answer ends")
    return [_encode_causal(row, tokenizer, max_length) for row in rows]


ENCODING_VERSION = 1  # bump when `encode` changes what it produces: old cache files stop matching
TOKENIZER_LIBRARIES = ("tokenizers", "transformers")


def tokenizer_versions() -> dict[str, str]:
    """The installed versions of the libraries that turn text into ids: part of the cache key,
    because the same tokenizer files can tokenize differently after an upgrade."""
    from importlib import metadata

    out = {}
    for name in TOKENIZER_LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


_ENCODED: dict[str, list[dict]] = {}  # this process's memo, by cache key


def cache_dir() -> Path:
    """Where tokenized splits are kept between processes: $HARNESS_CACHE/tokens, else ~/.cache/peft-harness/tokens."""
    import os

    root = os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "peft-harness"
    return Path(root) / "tokens"


def encode_cached(rows: Sequence[dict], tokenizer, task_type: str, max_length: int, label_names: tuple[str, ...],
                  *, data_fingerprint: str, tokenizer_fingerprint: str, split: str) -> list[dict]:
    """`encode`, done once per (data, tokenizer, split, task type, max_length) and reused.

    Every trial of a worker reuses the encoded split from memory, and every later process
    (other workers, a resumed run) loads it from `cache_dir()` instead of tokenizing again.
    The key holds the fingerprints of the rows and of the tokenizer's files and the versions
    of tokenizers and transformers, so a changed dataset, model or library never reads a
    stale entry.  Files are written atomically and read with
    `torch.load(weights_only=True)` (plain lists and ints only); an unreadable or
    unwritable cache falls back to tokenizing.  The returned list is shared: do not mutate it.
    """
    import os
    import pickle

    import torch

    key = hashlib.sha256(json.dumps([ENCODING_VERSION, data_fingerprint, tokenizer_fingerprint, split, task_type,
                                     max_length, list(label_names), tokenizer_versions()]).encode()).hexdigest()[:24]
    if key in _ENCODED:
        return _ENCODED[key]
    path = cache_dir() / f"{key}.pt"
    try:
        encoded = torch.load(path, weights_only=True)
        if not isinstance(encoded, list) or len(encoded) != len(rows):
            raise ValueError(f"{path} does not hold this split")
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):  # missing, partial, foreign: tokenize
        encoded = encode(rows, tokenizer, task_type, max_length, label_names)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save(encoded, tmp)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home: this process still keeps its memo
    _ENCODED[key] = encoded
    return encoded


def _encode_causal(row: dict, tokenizer, max_length: int) -> dict:
    prompt = tokenizer(row["prompt"])["input_ids"]
    answer = tokenizer(" " + row["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    keep = max_length - len(answer)
    if keep < 1:
        raise ValueError(f"answer {row['answer']!r} takes {len(answer)} tokens with eos; max_length {max_length} leaves no room "
                         "for the prompt: raise training.max_length")
    prompt = prompt[-keep:]  # cut the prompt's start: the answer and the question nearest it matter most
    return {"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer, "prompt_ids": prompt,
            "answer": row["answer"], "n_tokens": len(prompt) + len(answer)}


def collate(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids, attention_mask and labels (when the examples have them)."""
    import torch

    if not examples:
        raise ValueError("cannot collate an empty batch")
    if pad_id is None:
        raise ValueError("pad_id is None: give the tokenizer a pad token (e.g. its eos token)")
    width = max(len(e["input_ids"]) for e in examples)
    batch = {
        "input_ids": torch.tensor([e["input_ids"] + [pad_id] * (width - len(e["input_ids"])) for e in examples], dtype=torch.long),
        "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in examples],
                                       dtype=torch.long),
    }
    if "label" in examples[0]:
        batch["labels"] = torch.tensor([e["label"] for e in examples], dtype=torch.long)
    elif "labels" in examples[0]:
        batch["labels"] = torch.tensor([e["labels"] + [-100] * (width - len(e["labels"])) for e in examples], dtype=torch.long)
    return batch
