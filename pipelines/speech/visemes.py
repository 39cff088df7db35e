"""espeak-ng phoneme mnemonics -> viseme classes with mouth-shape targets.

A mouth shape has four numbers, the same four that `mouth.py` produces per video frame:
- open     0..1   jaw / lip opening (0 = lips together, 1 = widest vowel)
- width   -1..1   lip spread: +1 spread (as in "ee"), -1 narrow/pursed (as in "oo", "w")
- round    0..1   lip rounding / protrusion
- closure  0..1   lips pressed together (bilabial stops and nasals); 1/2 for the lower lip on the teeth (f, v).
                  Rest in silence is open 0 with closure 0: the lips meet without pressing.

Diphthongs glide from one target to another within the phoneme. `dominance` says how strongly a viseme holds
its target against its neighbours when they are blended (bilabials must close even when short; t/d/k take most
of their shape from the vowels around them).

The table covers the mnemonics espeak-ng uses for English (en, en-us, en-gb); phonemes of other languages use the
same ASCII conventions and fall back by their first character (vowel letter -> mid vowel, otherwise a neutral
consonant), so every label gets a shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.speech.tts import is_silence, strip_stress


@dataclass(frozen=True)
class MouthShape:
    open: float
    width: float
    round: float
    closure: float


@dataclass(frozen=True)
class Viseme:
    name: str
    start: MouthShape
    end: MouthShape
    dominance: float


def _v(name: str, open_: float, width: float, round_: float, closure: float, dominance: float) -> Viseme:
    shape = MouthShape(open_, width, round_, closure)
    return Viseme(name, shape, shape, dominance)


def _glide(name: str, first: Viseme, second: Viseme) -> Viseme:
    return Viseme(name, first.start, second.end, (first.dominance + second.dominance) / 2)


SIL = _v("sil", 0.0, 0.0, 0.0, 0.0, 1.5)
PBM = _v("PBM", 0.0, 0.0, 0.0, 1.0, 2.5)
FV = _v("FV", 0.05, 0.1, 0.0, 0.5, 1.5)
TH = _v("TH", 0.2, 0.15, 0.0, 0.0, 1.0)
SH = _v("SH", 0.15, -0.3, 0.55, 0.0, 1.2)
W = _v("W", 0.1, -0.6, 0.9, 0.0, 1.5)
R = _v("R", 0.2, -0.2, 0.45, 0.0, 0.8)
L = _v("L", 0.3, 0.1, 0.0, 0.0, 0.6)
DNTS = _v("DNTS", 0.15, 0.25, 0.0, 0.0, 0.6)
KG = _v("KG", 0.3, 0.05, 0.0, 0.0, 0.5)
Y = _v("Y", 0.15, 0.45, 0.0, 0.0, 0.8)
AA = _v("AA", 0.9, 0.1, 0.0, 0.0, 1.0)
AH = _v("AH", 0.6, 0.05, 0.0, 0.0, 1.0)
EH = _v("EH", 0.55, 0.35, 0.0, 0.0, 1.0)
SCHWA = _v("schwa", 0.4, 0.0, 0.0, 0.0, 0.7)
ER = _v("ER", 0.35, -0.15, 0.35, 0.0, 1.0)
IY = _v("IY", 0.25, 0.6, 0.0, 0.0, 1.0)
IH = _v("IH", 0.3, 0.45, 0.0, 0.0, 1.0)
AO = _v("AO", 0.6, -0.3, 0.6, 0.0, 1.0)
OH = _v("OH", 0.5, -0.4, 0.7, 0.0, 1.0)
UH = _v("UH", 0.3, -0.4, 0.6, 0.0, 1.0)
UW = _v("UW", 0.2, -0.6, 0.9, 0.0, 1.2)
NEUTRAL_CONSONANT = _v("C", 0.2, 0.1, 0.0, 0.0, 0.5)

_TABLE: dict[str, Viseme] = {
    # consonants
    "p": PBM, "b": PBM, "m": PBM,
    "f": FV, "v": FV,
    "T": TH, "D": TH,
    "S": SH, "Z": SH, "tS": SH, "dZ": SH,
    "w": W, "W": W,
    "r": R, "r-": R, "R": R,
    "l": L, "L": L,
    "t": DNTS, "d": DNTS, "n": DNTS, "s": DNTS, "z": DNTS, "t#": DNTS, "n-": DNTS, "?": DNTS,
    "k": KG, "g": KG, "N": KG, "x": KG, "h": KG,
    "j": Y,
    # vowels
    "a": AA, "A:": AA, "A": AA, "aa": AA, "A@": AA, "a#": AH,
    "V": AH,
    "E": EH, "e": EH, "e@": _glide("EH-schwa", EH, SCHWA),
    "@": SCHWA, "@2": SCHWA, "@5": SCHWA, "3": SCHWA, "@L": _glide("schwa-L", SCHWA, L),
    "3:": ER, "@r": ER,
    "I": IH, "I2": IH, "I#": IH,
    "i": IY, "i:": IY, "i@": _glide("IY-schwa", IY, SCHWA), "i@3": _glide("IY-ER", IY, ER),
    "0": AO, "O:": AO, "O": AO, "O2": AO, "O@": AO, "o@": _glide("AO-schwa", AO, SCHWA),
    "oU": _glide("OH-UW", OH, UW), "o": OH,
    "U": UH, "U@": _glide("UH-schwa", UH, SCHWA),
    "u:": UW, "u": UW, "u@": _glide("UW-schwa", UW, SCHWA),
    # diphthongs
    "aI": _glide("AA-IY", AA, IY), "aI@": _glide("AA-schwa", AA, SCHWA), "aI3": _glide("AA-ER", AA, ER),
    "aU": _glide("AA-UW", AA, UW),
    "eI": _glide("EH-IY", EH, IY),
    "OI": _glide("AO-IY", AO, IY),
}  # fmt: skip

_VOWEL_LETTERS = set("aeiouyAEIOUVY03@")


def viseme_for(label: str) -> Viseme:
    """The viseme of an espeak phoneme mnemonic (stress marks allowed); never fails."""
    name = strip_stress(label)
    if is_silence(name):
        return SIL
    found = _TABLE.get(name)
    if found is not None:
        return found
    if name[0] in _VOWEL_LETTERS:
        return SCHWA
    return _TABLE.get(name[0], NEUTRAL_CONSONANT)
