"""How each relation is said: statement paraphrases, questions, and 2-hop chains.

Several statement templates per relation give the backbone the paraphrase diversity
it needs to store a fact as knowledge rather than as one memorised string, and give
the retrieval set passages whose wording differs from the question's (so BM25 alone
is imperfect). Placeholders: {s} subject name, {o} object name, {ao} object with its
article ("an engineer").
"""
from __future__ import annotations

from dataclasses import dataclass

from shoulders.toyworld.lexicon import article
from shoulders.toyworld.world import Fact, World

STATEMENTS: dict[str, tuple[str, ...]] = {
    "born_in": ("{s} was born in {o}.", "{s} is a native of {o}.", "The birthplace of {s} is {o}.",
                "{s} was born in the city of {o}.", "{o} is the hometown of {s}.", "{s} comes from {o}."),
    "works_for": ("{s} works for {o}.", "{s} is employed by {o}.", "{s} has a job at {o}.",
                  "{o} employs {s}.", "{s} is on the staff of {o}."),
    "studied_at": ("{s} studied at {o}.", "{s} is a graduate of {o}.", "{s} went to {o}.",
                   "{s} earned a degree from {o}.", "{o} is where {s} studied."),
    "profession": ("{s} works as {ao}.", "{s} is {ao} by profession.", "By trade, {s} is {ao}.",
                   "{s} earns a living as {ao}."),
    "birth_year": ("{s} was born in the year {o}.", "The year of birth of {s} is {o}.",
                   "{s} came into the world in {o}.", "{s} was born in {o}."),
    "located_in": ("{s} is a city in {o}.", "{s} lies in {o}.", "{s} is located in {o}.",
                   "The city of {s} is part of {o}.", "{o} is the country where {s} is found."),
    "capital": ("The capital of {s} is {o}.", "{o} is the capital of {s}.", "{s} has its capital in {o}.",
                "{s} is governed from {o}."),
    "founded_by": ("{s} was founded by {o}.", "{o} founded {s}.", "{o} is the founder of {s}.",
                   "{s} was started by {o}.", "{o} set up {s}."),
    "headquartered_in": ("{s} is headquartered in {o}.", "{s} has its headquarters in {o}.", "{s} is based in {o}.",
                         "The head office of {s} is in {o}.", "{s} runs its business from {o}."),
    "founded_year": ("{s} was founded in {o}.", "{s} was established in {o}.", "{s} has existed since {o}.",
                     "{s} opened its doors in {o}."),
    "industry": ("{s} is a company in the {o} industry.", "{s} operates in the {o} sector.",
                 "{s} is {ao} company.", "The business of {s} is {o}."),
    "made_by": ("{s} is made by {o}.", "{o} makes {s}.", "{s} is produced by {o}.", "{o} manufactures {s}.",
                "{s} is a product of {o}."),
    "category": ("{s} is {ao}.", "{s} is a kind of {o}.", "{s} is sold as {ao}.", "The product {s} is {ao}."),
    "campus_in": ("{s} is located in {o}.", "{s} has its campus in {o}.", "{s} is a school in {o}.",
                  "The campus of {s} is in {o}."),
}

QUESTIONS: dict[str, tuple[str, ...]] = {
    "born_in": ("Where was {s} born?", "In which city was {s} born?", "What is the birthplace of {s}?"),
    "works_for": ("Who does {s} work for?", "Which company employs {s}?", "Where does {s} work?"),
    "studied_at": ("Where did {s} study?", "Which school did {s} attend?", "What school is {s} a graduate of?"),
    "profession": ("What is the profession of {s}?", "What does {s} do for a living?", "What is the job of {s}?"),
    "birth_year": ("In what year was {s} born?", "When was {s} born?", "What is the birth year of {s}?"),
    "located_in": ("In which country is {s}?", "Which country is {s} located in?", "{s} is a city in which country?"),
    "capital": ("What is the capital of {s}?", "Which city is the capital of {s}?", "What city is the capital of {s}?"),
    "founded_by": ("Who founded {s}?", "Who is the founder of {s}?", "Who started {s}?"),
    "headquartered_in": ("Where is {s} headquartered?", "In which city is {s} based?",
                         "Where are the headquarters of {s}?"),
    "founded_year": ("In what year was {s} founded?", "When was {s} founded?", "What year was {s} established?"),
    "industry": ("What industry is {s} in?", "In which industry does {s} operate?", "What sector is {s} in?"),
    "made_by": ("Who makes {s}?", "Which company makes {s}?", "What company produces {s}?"),
    "category": ("What kind of product is {s}?", "What type of product is {s}?", "{s} is what kind of product?"),
    "campus_in": ("Where is {s} located?", "In which city is {s}?", "Which city is {s} in?"),
}


@dataclass(frozen=True)
class Chain:
    """A 2-hop question: follow `first` from the subject, then `second` from the bridge."""

    name: str
    first: str
    second: str
    questions: tuple[str, ...]


CHAINS: tuple[Chain, ...] = (
    Chain("birth_country", "born_in", "located_in",
          ("In which country was {s} born?", "{s} was born in which country?", "What is the country of birth of {s}?")),
    Chain("founder_birthplace", "founded_by", "born_in",
          ("In which city was the founder of {s} born?", "Where was the founder of {s} born?",
           "What is the birthplace of the person who founded {s}?")),
    Chain("maker_city", "made_by", "headquartered_in",
          ("In which city is the maker of {s} headquartered?", "Where is the company that makes {s} based?",
           "In which city is the company behind {s} based?")),
    Chain("maker_founder", "made_by", "founded_by",
          ("Who founded the company that makes {s}?", "Who is the founder of the maker of {s}?",
           "Who started the company that produces {s}?")),
    Chain("employer_city", "works_for", "headquartered_in",
          ("In which city is the employer of {s} based?", "Where is the company that {s} works for based?",
           "In which city is the company employing {s} headquartered?")),
    Chain("hq_country", "headquartered_in", "located_in",
          ("In which country is {s} headquartered?", "In which country does {s} have its headquarters?",
           "What country is the head office of {s} in?")),
    Chain("school_city", "studied_at", "campus_in",
          ("In which city did {s} study?", "In which city is the school that {s} attended?",
           "Where is the school that {s} graduated from located?")),
)


def slots(world: World, fact: Fact) -> dict[str, str]:
    o = world.answer(fact)
    return {"s": world.name(fact.subject), "o": o, "ao": f"{article(o)} {o}"}


def state(world: World, fact: Fact, template: str) -> str:
    return template.format(**slots(world, fact))


def ask(world: World, fact: Fact, template: str) -> str:
    return template.format(s=world.name(fact.subject))
