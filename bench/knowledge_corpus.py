"""Synthetic English knowledge bases for bench/knowledge.py: text, trees, vectors, queries.

Documents mix function words, a long tail of ~20,000 English words (the embedding
model's own WordPiece vocabulary, roughly in frequency order, drawn Zipf-wise) and the
words of their topic (gardening, finance, travel...), each document using only a few of
its topic's words. So a query word matches a realistic share of a user's documents:
a topic's main word hits thousands, a rarer word or a pair of words far fewer. Vectors are
synthetic: unit vectors drawn around one centroid per topic, as real embeddings of
texts about one subject cluster; queries' vectors come from the same distribution.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

import numpy as np

DIMENSIONS = 384

# Function and everyday words; most are stop words to full-text search.
COMMON = (
    "the a an of and to in is that for on with as by at from this it be are was were "
    "or not but have has had will would can could should may might must do does did "
    "we you they he she i our your their his her its them us me my there here when "
    "where which who what how why all any some each every more most other such only "
    "also very just than then so if about into over after before between through "
    "during under again once because while although however therefore still already "
    "new good first last long great little own same big high different small large "
    "next early young important few public bad able time year people way day man "
    "thing woman life child world school state family student group country problem "
    "hand part place case week company system program question work government number "
    "night point home water room mother area money story fact month lot right study "
    "book eye job word business issue side kind head house service friend father power "
    "hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art "
    "war history party result change morning reason research girl guy moment air "
    "teacher force education note plan meeting list remember check follow update "
    "decide need want think know make take see come look use find give tell ask try"
).split()

# Each topic: its folder label, then words about it (most frequent first).
TOPICS: dict[str, str] = {
    "garden": "garden tomato basil soil compost seed seedling watering mulch greenhouse "
    "pruning rose lavender fertilizer harvest raised bed weeds aphid trellis cucumber "
    "zucchini perennial bulb irrigation hedge orchard pumpkin germination clover",
    "finance": "budget savings invoice tax mortgage interest pension dividend portfolio "
    "expense salary receipt loan insurance refund deposit bank account inflation "
    "bond equity fund accountant deduction audit ledger credit debit payroll",
    "travel": "flight hotel passport luggage itinerary airport train booking visa "
    "museum beach hostel ferry rental map tour souvenir layover boarding customs "
    "luggage backpack cruise resort guidebook jetlag excursion lisbon kyoto",
    "health": "doctor appointment vaccine prescription symptom allergy blood pressure "
    "cholesterol therapy dentist clinic vitamin insomnia fever migraine diagnosis "
    "physiotherapy checkup surgery pharmacy dosage antibiotic asthma nutrition",
    "fitness": "running marathon workout gym squat deadlift stretching cycling swimming "
    "yoga cardio interval protein stamina sprint treadmill kettlebell pushup plank "
    "hiking rowing triathlon recovery hydration pace coach endurance",
    "cooking": "recipe dough oven pasta sauce garlic onion butter flour sugar roast "
    "simmer bake curry soup bread knead marinade spice risotto dumpling broth "
    "vinaigrette skillet custard pastry ferment sourdough lentil",
    "software": "database query index server deploy python function bug release "
    "migration container kubernetes api endpoint latency cache schema commit branch "
    "refactor compiler thread memory benchmark postgres webhook token",
    "projects": "project milestone deadline roadmap stakeholder deliverable sprint "
    "backlog estimate scope risk retrospective kickoff requirement prototype launch "
    "dependency blocker handover review timeline resource proposal charter",
    "family": "birthday anniversary wedding grandmother grandfather cousin nephew niece "
    "daughter son sister brother uncle aunt reunion holiday christmas thanksgiving "
    "babysitter school playdate allowance chores bedtime picnic album",
    "home": "kitchen renovation plumber electrician roof gutter boiler insulation "
    "carpet paint furniture sofa mattress curtain lease landlord rent mortgage "
    "appliance dishwasher laundry vacuum thermostat window fence shed",
    "car": "engine brakes tyre oil garage mechanic mileage insurance registration "
    "battery clutch gearbox exhaust windscreen wiper headlight service inspection "
    "fuel diesel hybrid charger parking toll licence",
    "music": "guitar piano chord melody rhythm concert album lyrics rehearsal band "
    "drum violin scale tempo harmony chorus verse playlist vinyl amplifier "
    "microphone orchestra jazz composer sheet tuning",
    "reading": "novel author chapter library poetry biography fiction memoir essay "
    "publisher paperback audiobook bookshelf review quote character plot narrator "
    "trilogy anthology translation manuscript bestseller prologue epilogue",
    "work": "manager colleague meeting agenda presentation report quarterly review "
    "promotion interview contract client negotiation feedback onboarding payroll "
    "overtime remote office commute hiring performance objective strategy",
    "learning": "course lecture exam homework tutorial certificate syllabus grammar "
    "vocabulary flashcard thesis seminar professor curriculum assignment quiz "
    "notebook textbook revision tutor semester diploma scholarship",
    "pets": "dog cat puppy kitten veterinarian leash collar litter kibble grooming "
    "adoption vaccination flea tick walk treat training crate aquarium hamster "
    "parrot rabbit microchip neutering shelter",
    "photography": "camera lens aperture shutter exposure tripod portrait landscape "
    "lightroom raw histogram focus bokeh flash sensor zoom panorama composition "
    "print album negative darkroom filter mirrorless",
    "climate": "emissions carbon solar wind renewable battery recycling compost "
    "insulation heatpump drought flood wildfire glacier biodiversity sustainability "
    "footprint offset electricity grid policy adaptation",
    "legal": "contract lawyer clause agreement liability court lawsuit warranty "
    "copyright trademark patent notary deed will testament custody tenancy "
    "dispute settlement arbitration compliance regulation",
    "events": "party invitation venue catering guest rsvp decoration cake balloon "
    "speech toast dress code seating photographer florist playlist budget "
    "celebration gala ticket festival",
    "volunteering": "charity donation fundraiser volunteer shelter foodbank mentor "
    "community cleanup campaign nonprofit board grant outreach newsletter "
    "drive auction pledge sponsor",
    "investing": "stock shares broker etf index crypto bitcoin volatility yield "
    "rebalancing allocation risk return compound dividend valuation earnings "
    "market bear bull hedge option",
    "science": "experiment hypothesis telescope galaxy planet molecule protein genome "
    "evolution particle physics chemistry laboratory microscope climate neuron "
    "quantum fossil volcano earthquake",
    "language": "spanish french german italian japanese pronunciation conjugation "
    "verb noun idiom dialect fluency immersion tandem duolingo accent subtitles "
    "translation dictionary phrasebook",
    "shopping": "groceries order delivery discount coupon receipt return warranty "
    "wishlist subscription cart checkout parcel courier price sale outlet "
    "marketplace refund invoice",
    "writing": "draft outline blog article newsletter editor headline paragraph "
    "essay story plot character dialogue pitch manuscript deadline revision "
    "submission journal prompt",
    "games": "chess board puzzle strategy tournament console controller level quest "
    "multiplayer dice card deck score leaderboard achievement sudoku crossword "
    "campaign character",
    "sports": "football tennis basketball match season league referee goal stadium "
    "fixture transfer coach training injury playoff champion trophy cricket "
    "rugby golf",
}

PEOPLE = (
    "sarah oneil james okafor maria gonzalez li wei priya raman tom becker anna "
    "kowalski david levi fatima haddad lucas martin emma johansson noah fischer "
    "olivia rossi mateo silva chloe dubois hiroshi tanaka amara nwosu"
).split()
PLACES = "lisbon kyoto berlin toronto nairobi oslo porto vienna denver lyon".split()


def _topic_words() -> list[list[str]]:
    words = []
    for text in TOPICS.values():
        seen: list[str] = []
        for word in text.split():
            if word not in seen:
                seen.append(word)
        words.append(seen)
    return words


TOPIC_NAMES = list(TOPICS)
TOPIC_WORDS = _topic_words()


def _english_vocabulary() -> list[str]:
    """Whole lowercase words of the local model's vocabulary, most frequent first."""
    from carmenta.knowledge.embeddings import local_model_dir

    vocab = json.loads((local_model_dir() / "tokenizer.json").read_text())["model"]["vocab"]
    ordered = sorted(vocab.items(), key=lambda item: item[1])
    return [token for token, _ in ordered if re.fullmatch(r"[a-z]{4,14}", token)]


def _zipf_cdf(size: int, exponent: float = 1.05) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1) ** exponent
    return np.cumsum(weights) / weights.sum()


@dataclass
class GeneratedDocument:
    path: str
    title: str
    content: str
    topic: int
    second_topic: int


class Corpus:
    """Deterministic for a seed: the same parameters give the same documents."""

    def __init__(self, *, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.py_rng = random.Random(seed)
        self.common = np.array(COMMON, dtype=object)
        self.common_cdf = _zipf_cdf(len(COMMON), 0.9)
        self.topic_arrays = [np.array(words, dtype=object) for words in TOPIC_WORDS]
        self.topic_cdfs = [_zipf_cdf(len(words)) for words in TOPIC_WORDS]
        self.names = np.array(PEOPLE + PLACES, dtype=object)
        self.english = np.array(_english_vocabulary(), dtype=object)
        self.english_cdf = _zipf_cdf(len(self.english), 1.0)
        # Centroids far apart, as unrelated subjects are in embedding space.
        centroids = self.rng.standard_normal((len(TOPICS), DIMENSIONS)).astype(np.float32)
        self.centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)

    # --- text -------------------------------------------------------------------------

    def _focus(self, topic: int, size: int) -> np.ndarray:
        """A few of the topic's words, the topic's main words more often than the rest."""
        words = self.topic_arrays[topic]
        weights = np.diff(self.topic_cdfs[topic], prepend=0.0)
        size = min(size, len(words))
        return words[self.rng.choice(len(words), size=size, replace=False, p=weights)]

    def _words(self, count: int, topic: int, second: int) -> list[str]:
        kind = np.searchsorted(np.array([0.45, 0.75, 0.93, 0.98, 1.0]), self.rng.random(count))
        draws = self.rng.random(count)
        out = np.empty(count, dtype=object)
        mask = kind == 0
        out[mask] = self.common[np.searchsorted(self.common_cdf, draws[mask])]
        mask = kind == 1
        index = np.minimum(np.searchsorted(self.english_cdf, draws[mask]), len(self.english) - 1)
        out[mask] = self.english[index]
        for which, focus in (
            (2, self._focus(topic, self.py_rng.randint(6, 10))),
            (3, self._focus(second, self.py_rng.randint(2, 5))),
        ):
            mask = kind == which
            out[mask] = focus[(draws[mask] * len(focus)).astype(int)]
        mask = kind == 4
        out[mask] = self.names[(draws[mask] * len(self.names)).astype(int)]
        return out.tolist()

    def content(self, *, title: str, topic: int, second: int, chars: int) -> str:
        """Markdown of about `chars` characters: a heading, then paragraphs of sentences."""
        words = self._words(chars // 5, topic, second)
        paragraphs: list[str] = []
        sentences: list[str] = []
        position = 0
        size = len(title) + 4
        while size < chars and position < len(words):
            length = self.py_rng.randint(7, 19)
            sentence_words = words[position : position + length]
            position += length
            sentence = " ".join(sentence_words)
            sentence = sentence[:1].upper() + sentence[1:] + "."
            sentences.append(sentence)
            size += len(sentence) + 1
            if len(sentences) >= self.py_rng.randint(3, 6):
                paragraphs.append(" ".join(sentences))
                sentences = []
                size += 1
        if sentences:
            paragraphs.append(" ".join(sentences))
        return f"# {title}\n\n" + "\n\n".join(paragraphs)

    def title(self, *, topic: int) -> str:
        topic_words = self.topic_arrays[topic]
        words = [
            str(topic_words[min(int(self.rng.zipf(1.3)) - 1, len(topic_words) - 1)]),
            str(self.english[self.py_rng.randrange(300, 6000)]),
        ]
        if self.py_rng.random() < 0.5:
            words.append(str(topic_words[self.py_rng.randrange(len(topic_words))]))
        self.py_rng.shuffle(words)
        if self.py_rng.random() < 0.15:
            words.append(str(self.names[self.py_rng.randrange(len(self.names))]))
        if self.py_rng.random() < 0.2:
            words.append(str(self.py_rng.randint(2015, 2026)))
        return " ".join(words).capitalize()

    # --- vectors ------------------------------------------------------------------------

    def vectors_near(self, topics: np.ndarray, seconds: np.ndarray, spread: float) -> np.ndarray:
        """Unit vectors near a mix of each row's topic and second topic centroids."""
        base = self.centroids[topics] * 0.8 + self.centroids[seconds] * 0.25
        noise = self.rng.standard_normal((len(topics), DIMENSIONS)).astype(np.float32)
        vectors = base + noise * (spread / np.sqrt(DIMENSIONS))
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    # --- queries ------------------------------------------------------------------------

    def query(self, *, topics: list[int]) -> tuple[str, int]:
        """A search a person might type about one of `topics`, sometimes misspelt."""
        topic = self.py_rng.choice(topics)
        words = self.topic_arrays[topic]
        pick = lambda top: str(words[self.py_rng.randrange(min(top, len(words)))])  # noqa: E731
        roll = self.py_rng.random()
        if roll < 0.15:
            text = pick(6)  # one frequent word: many matches
        elif roll < 0.6:
            text = f"{pick(len(words))} {pick(len(words))}"
        elif roll < 0.75:
            text = (
                f"{pick(12)} {pick(len(words))} {COMMON[self.py_rng.randrange(100, len(COMMON))]}"
            )
        elif roll < 0.85:
            text = f'"{pick(10)} {pick(10)}"'
        elif roll < 0.9:
            text = f"{PEOPLE[self.py_rng.randrange(len(PEOPLE))]} {pick(len(words))}"
        else:
            text = _typo(pick(len(words)), self.py_rng)
        return text, topic


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word + word[-1]
    at = rng.randrange(1, len(word) - 2)
    return word[:at] + word[at + 1] + word[at] + word[at + 2 :]
