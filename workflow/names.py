"""Words of label names: the one stemmer and the word lists that name checks, keyword names and taxonomy updates
share, and the checks that tell a name from a copied or cut-off piece of a document.

JUNK_WORDS is the published list a keyword name may not use and bench_names.py counts: the SMART system's English
stop list (Salton, Cornell; 571 words) together with scikit-learn's English stop words (Glasgow IR group) and
CHAT_WORDS (chat words: "ago", "thing", "pls"), less
TOPIC_WORDS, a few stop-listed words that are topics in some corpora ("top up", "bill", "new card", "change pin").
"""

from __future__ import annotations

import re
from functools import lru_cache

# ftp://ftp.cs.cornell.edu/pub/smart/english.stop (the SMART retrieval system's stop list)
SMART_STOP_WORDS = frozenset("""
a a's able about above according accordingly across actually after afterwards again against ain't all allow allows
almost alone along already also although always am among amongst an and another any anybody anyhow anyone anything
anyway anyways anywhere apart appear appreciate appropriate are aren't around as aside ask asking associated at
available away awfully b be became because become becomes becoming been before beforehand behind being believe below
beside besides best better between beyond both brief but by c c'mon c's came can can't cannot cant cause causes
certain certainly changes clearly co com come comes concerning consequently consider considering contain containing
contains corresponding could couldn't course currently d definitely described despite did didn't different do does
doesn't doing don't done down downwards during e each edu eg eight either else elsewhere enough entirely especially
et etc even ever every everybody everyone everything everywhere ex exactly example except f far few fifth first five
followed following follows for former formerly forth four from further furthermore g get gets getting given gives go
goes going gone got gotten greetings h had hadn't happens hardly has hasn't have haven't having he he's hello help
hence her here here's hereafter hereby herein hereupon hers herself hi him himself his hither hopefully how howbeit
however i i'd i'll i'm i've ie if ignored immediate in inasmuch inc indeed indicate indicated indicates inner insofar
instead into inward is isn't it it'd it'll it's its itself j just k keep keeps kept know knows known l last lately
later latter latterly least less lest let let's like liked likely little look looking looks ltd m mainly many may
maybe me mean meanwhile merely might more moreover most mostly much must my myself n name namely nd near nearly
necessary need needs neither never nevertheless new next nine no nobody non none noone nor normally not nothing novel
now nowhere o obviously of off often oh ok okay old on once one ones only onto or other others otherwise ought our
ours ourselves out outside over overall own p particular particularly per perhaps placed please plus possible
presumably probably provides q que quite qv r rather rd re really reasonably regarding regardless regards relatively
respectively right s said same saw say saying says second secondly see seeing seem seemed seeming seems seen self
selves sensible sent serious seriously seven several shall she should shouldn't since six so some somebody somehow
someone something sometime sometimes somewhat somewhere soon sorry specified specify specifying still sub such sup
sure t t's take taken tell tends th than thank thanks thanx that that's thats the their theirs them themselves then
thence there there's thereafter thereby therefore therein theres thereupon these they they'd they'll they're they've
think third this thorough thoroughly those though three through throughout thru thus to together too took toward
towards tried tries truly try trying twice two u un under unfortunately unless unlikely until unto up upon us use
used useful uses using usually uucp v value various very via viz vs w want wants was wasn't way we we'd we'll we're
we've welcome well went were weren't what what's whatever when whence whenever where where's whereafter whereas
whereby wherein whereupon wherever whether which while whither who who's whoever whole whom whose why will willing
wish with within without won't wonder would wouldn't x y yes yet you you'd you'll you're you've your yours yourself
yourselves z zero
""".split())

# Words of chat that no stop list has but that name nothing alone ("Transfer / days ago", "Card / pls"): the
# published list's own additions. Words of time ("days", "week") stay: "how many days" is what a timing question
# is about.
CHAT_WORDS = frozenset("""ago today yesterday tomorrow thing things lot bit stuff guys hey hiya pls plz thx lol wanna
    gonna im ive dont cant didnt doesnt isnt wont couldnt wouldnt shouldnt havent hasnt ll ve""".split())

# Stop-listed words that name a topic in some corpora; a keyword name may use them inside a phrase ("top up", "new
# card", "change pin") and, the longer ones, alone ("bill", "interest").
TOPIC_WORDS = frozenset({"top", "up", "new", "bill", "call", "interest", "amount", "move", "name", "system", "full",
                         "change", "changes", "value", "old", "first", "last", "second", "available", "fire"})
PHRASE_ONLY = frozenset({"up", "new", "old", "first", "last", "second", "available", "top", "full", "change",
                         "changes"})  # topic words that say nothing alone
TAIL_ONLY = frozenset({"up"})  # ends a pair ("top up"), never starts one ("up card" of "top up card")


@lru_cache(maxsize=1)
def _sklearn_stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


@lru_cache(maxsize=1)
def junk_words() -> frozenset[str]:
    """The published junk-word list (module docstring): never a keyword, never the edge of a keyword name."""
    return (SMART_STOP_WORDS | _sklearn_stop_words() | CHAT_WORDS) - TOPIC_WORDS


# Words of 3+ letters that match no topic ("the", "about"): what content-word checks skip.
FUNCTION_WORDS = frozenset(
    """the and for but nor not yes you your yours our ours are was were has had have can could would should will may
    might must how why who whom what when where which this that these those with from into onto than then them they
    their there here its his her him she all any each few more most some such own same too very just also
    about""".split())

# Words a label name shares with every other label, not evidence of the same topic ("Refund requests").
GENERIC_WORDS = frozenset("""a an the and or of to in on for from by with about as at into via vs per other others
    general misc miscellaneous request requests question questions issue issues problem problems query queries inquiry
    inquiries enquiry enquiries help support topic topics related document documents customer customers concern
    concerns info information need needs regarding""".split())

COPY_RUN = 6  # a name sharing a run of this many words with a document copies it
COPY_PREFIX = 4  # ... as does one that is a document's first words, from this many words on
# a name ending on one of these was cut off mid-phrase ("... Act of", "Fees for the")
DANGLING = frozenset("""a an the and or of to in on for from by with as at into via vs per nor but than that which
    who whose whom its their your our my his her this these those is are was were be been""".split())


def stem(word: str) -> str:
    """A crude stem, enough to make "refunds", "refunded" and "refund" (or "charges" and "charged") one word."""
    word = word.lower()
    for suffix, repl in (("ings", ""), ("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if suffix == "es" and not re.search(r"(s|x|z|ch|sh)es$", word):
            continue  # "rates" -> "rate" (by "s"), "boxes" -> "box"
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not (suffix == "s" and word.endswith("ss")):
            word = word[: len(word) - len(suffix)] + repl
            break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def root(word: str) -> str:
    """A word's root for "one keyword per root" and cross-inflection matching: its stem's first 5 letters
    ('charged'/'charges' -> 'charg', 'activation'/'activate' -> 'activ')."""
    return stem(word)[:5]


def content_words(text: str) -> list[str]:
    """Words of 3+ letters that are not function words ("top up", "pin" and "atm" count; "the" does not)."""
    return [w for w in re.findall(r"[a-z]{3,}", text.lower()) if w not in FUNCTION_WORDS]


def words(text: str) -> list[str]:
    """Lower-case word tokens (letters, digits, inner apostrophes), what copy checks compare."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def name_junk(name: str) -> list[str]:
    """Junk words (`junk_words`) of a name: a part of a slash list that is one junk word or a phrase-only topic word
    ("Pay / google / ups" has none, "Card / virtual / using" has 'using'), or a junk word at either end of a phrase
    ("Need reservation set": 'need'). Function words inside a phrase ("Fees for transfers") are fine."""
    junk = junk_words()
    found: list[str] = []
    for part in name.split("/"):
        ws = words(part)
        if len(ws) == 1:
            found += [w for w in ws if w in junk or w in PHRASE_ONLY]
        elif ws:
            found += [w for w in dict.fromkeys((ws[0], ws[-1])) if w in junk]
    return found


def copy_reason(name: str, texts: list[str]) -> str | None:
    """Why ``name`` copies one of ``texts`` rather than naming what they share, or None: it shares a run of COPY_RUN
    (6) words with a text, or it is a text's first words (COPY_PREFIX, 4, or more of them)."""
    ws = words(name)
    if len(ws) < COPY_PREFIX:
        return None
    runs = {tuple(ws[i:i + COPY_RUN]) for i in range(len(ws) - COPY_RUN + 1)}
    for text in texts:
        tw = _text_words(text)
        if tw[:len(ws)] == tuple(ws):
            return "the name is the opening of a document: name the topic the documents share in a few words"
        if runs and any(tw[i:i + COPY_RUN] in runs for i in range(len(tw) - COPY_RUN + 1)):
            return (f"the name copies {COPY_RUN} or more words of a document: name the topic the documents share in a "
                    "few words of your own")
    return None


SENTENCE_OPENERS = frozenset({"i", "i'm", "i've", "my", "me", "we", "our", "you", "your", "he", "she", "they",
                              "their", "it", "it's", "its", "there", "here"})


def sentence_reason(name: str) -> str | None:
    """Why ``name`` reads as a sentence someone said, not a label, or None: it opens with a person or pronoun ("Your
    Identity Has Not Been Verified", "I lost my card"), as a small model writes from summaries."""
    first = name.strip().split(maxsplit=1)[0].lower().strip("\"'.,:;!?") if name.strip() else ""
    if first in SENTENCE_OPENERS:
        return (f"'{name.strip()}' reads as a sentence, not a label: name the topic in a few words "
                "(e.g. 'Identity verification')")
    return None


@lru_cache(maxsize=8192)
def _text_words(text: str) -> tuple[str, ...]:
    return tuple(words(text))


def truncated_reason(name: str, max_chars: int | None = None, max_words: int | None = None) -> str | None:
    """Why ``name`` is cut off or too long, or None: longer than the caps (a constrained decoder stops a string at its
    schema's maxLength, mid-word: "... Assistance Improveram"), or ending mid-phrase ("... Act of", "... FLAME,")."""
    stripped = name.strip()
    if max_chars is not None and len(stripped) >= max_chars:
        return f"the name is too long (at most {max_chars - 1} characters): name the topic in a few words"
    if max_words is not None and len(stripped.split()) > max_words:
        return f"the name is too long (at most {max_words} words): name the topic in a few words"
    if re.search(r"[,;:(\[&/+-]\s*$", stripped):
        return f"'{stripped}' is cut off: end the name on a whole word"
    ws = words(stripped)
    if len(ws) > 1 and ws[-1] in DANGLING:
        return f"'{stripped}' ends mid-phrase: name the topic in a few complete words"
    return None
