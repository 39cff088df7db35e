"""Draft speech: espeak-ng synthesis with phoneme and word timing.

The `espeakng-loader` wheel ships `libespeak-ng.so` and its `espeak-ng-data`; we drive the library through
ctypes in synchronous retrieval mode, so no audio device and no system package is involved. The synth callback
collects the 16-bit samples and the events: espeakEVENT_PHONEME gives each phoneme's start sample (the phoneme
lasts until the next one starts), espeakEVENT_WORD gives each word's start sample and its character span in the
input text, which we map back to the word as written.

espeak-ng keeps its state (voice, rate, callback) in globals, so every call holds one module lock and sets every
parameter it depends on; the library is initialised once per process.

Determinism: espeak's wave generator carries state from one utterance to the next (a pitch "flutter" table index
and a roughness cycle counter that are never reset) and draws noise from a seeded generator. So we point espeak at
a private view of its data folder (symlinks, plus our own voice variant files that set `flutter 0` and disable the
roughness modulation) and reseed before each utterance: the same text + voice + rate + pitch then gives the same
samples, whatever was synthesised before. The cost is a slightly steadier pitch than stock espeak.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass

import numpy as np

from pipelines.errors import InputError
from pipelines.speech.track import TimedUnit

# speak_lib.h constants (espeak-ng 1.5x ABI).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_EE_OK = 0
_EE_NOT_FOUND = 2
_RAND_SEED = 1
# Appended to every voice variant we hand espeak: no pitch flutter, no roughness modulation (see module doc).
_STEADY_LINES = "\nflutter 0\nroughness 8\n"
_VARIANT_PREFIX = "talkreel-"
_RELEASE_TIMED_STOPS = {"p", "t", "k", "tS"}
_SILENT_PCM = 16  # of 32767: espeak's closures are digital silence
_MIN_CLOSURE_S = 0.012
_MIN_PREVIOUS_S = 0.020

DEFAULT_RATE_WPM = 175
RATE_RANGE_WPM = (80, 450)
DEFAULT_PITCH = 50
# espeak marks stress with these before a vowel; they are not part of the phoneme itself.
_STRESS_MARKS = "'\","
SILENCE = "_"


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class Synthesis:
    """Synthesised speech: mono float32 samples in [-1, 1] and the timing espeak reported for them.

    `phonemes` are contiguous and cover [0, duration]; pauses are labelled "_". Labels are espeak's phoneme
    mnemonics without stress marks. `words` are the input's whitespace-separated words as written, outer
    punctuation stripped ("42" stays "42" though espeak says "forty two"), each from its first to its last
    spoken phoneme. Where espeak folds written words into one dictionary entry ("of the"), they share its
    time in proportion to their length in characters.
    """

    samples: np.ndarray
    sample_rate: int
    phonemes: tuple[TimedUnit, ...]
    words: tuple[TimedUnit, ...]

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def _private_data_dir(source: str) -> str:
    """A folder that looks like `source` (symlinks) but whose voices/!v we may add variant files to."""
    root = tempfile.mkdtemp(prefix="talkreel-espeak-")
    owner = os.getpid()
    # Only the creating process removes it: a forked worker that exits normally must not pull it away.
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(root, ignore_errors=True))
    data = os.path.join(root, "espeak-ng-data")
    os.mkdir(data)
    for name in os.listdir(source):
        if name != "voices":
            os.symlink(os.path.join(source, name), os.path.join(data, name))
    voices_src = os.path.join(source, "voices")
    os.mkdir(os.path.join(data, "voices"))
    for name in os.listdir(voices_src):
        if name != "!v":
            os.symlink(os.path.join(voices_src, name), os.path.join(data, "voices", name))
    os.mkdir(os.path.join(data, "voices", "!v"))
    return data


class _Espeak:
    """The process-wide espeak-ng library; use only while holding `_LOCK`."""

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))

        self.source_data = espeakng_loader.get_data_path()
        self.data = _private_data_dir(self.source_data)
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data.encode(), options)
        if rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise (data at {self.source_data})")
        self.lib = lib
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, str]] = []
        # Kept as an attribute: ctypes must not garbage-collect a callback the C side still holds.
        self._callback = _SynthCallback(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            label = ""
            if ev.type == _EVENT_PHONEME:
                label = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
            self._events.append((ev.type, ev.sample, ev.text_position, ev.length, label))
            i += 1
        return 0  # 0 = keep synthesising

    def languages(self) -> list[str]:
        found: set[str] = set()
        voices = self.lib.espeak_ListVoices(None)
        i = 0
        while voices[i]:
            raw = voices[i].contents.languages or b""
            # `languages` is a run of (priority byte, NUL-terminated name), ended by an empty name.
            pos = 0
            while pos + 1 < len(raw):
                end = raw.find(b"\0", pos + 1)
                end = len(raw) if end < 0 else end
                name = raw[pos + 1 : end]
                if not name:
                    break
                found.add(name.decode("ascii", "replace"))
                pos = end + 1
            i += 1
        return sorted(found)

    def _voice_named_for(self, language: str) -> str | None:
        """The name of the first voice whose language list holds `language` exactly (languages() lists them)."""
        voices = self.lib.espeak_ListVoices(None)
        wanted = language.lower().encode()
        i = 0
        while voices[i]:
            raw = voices[i].contents.languages or b""
            # the same (priority byte, NUL-terminated name) run languages() reads
            names = {part[1:].lower() for part in raw.split(b"\0") if len(part) > 1}
            if wanted in names:
                return (voices[i].contents.identifier or b"").decode("ascii", "replace") or None
            i += 1
        return None

    def _steady_variant(self, variant: str) -> str | None:
        """Write (once) our variant file: the named stock variant, or none, with the steady lines appended."""
        safe = "".join(c for c in variant if c.isalnum() or c in "-_")
        if safe != variant:
            return None
        target = os.path.join(self.data, "voices", "!v", _VARIANT_PREFIX + (variant or "steady"))
        if not os.path.exists(target):
            body = "language variant\nname steady\n"
            if variant:
                stock = os.path.join(self.source_data, "voices", "!v", variant)
                if not os.path.isfile(stock):
                    return None
                with open(stock, encoding="utf-8", errors="replace") as fh:
                    body = fh.read()
            with open(target, "w", encoding="utf-8") as fh:
                fh.write(body + _STEADY_LINES)
        return os.path.basename(target)

    def _unknown_voice(self, voice: str) -> InputError:
        langs = self.languages()
        preferred = ["en"] + [v for v in ("en-us", "en-gb", "de", "fr", "es", "it", "pt", "nl") if v in langs]
        shown = ", ".join(preferred + [v for v in langs if v not in preferred][: 12 - len(preferred)])
        variants = sorted(os.listdir(os.path.join(self.source_data, "voices", "!v")))[:6]
        return InputError(
            None,
            "audio.voice",
            f"unknown espeak-ng voice {voice!r}; expected one of {len(langs)} languages, e.g. {shown} "
            f"(optionally with +variant, e.g. en+{variants[0] if variants else 'f3'})",
        )

    def set_voice(self, voice: str) -> None:
        # Set on every utterance even when unchanged: it also clears the echo buffer some variants use.
        base, _, variant = voice.partition("+")
        steady = self._steady_variant(variant)
        if not base or steady is None:
            raise self._unknown_voice(voice)
        status = self.lib.espeak_SetVoiceByName(f"{base}+{steady}".encode())
        if status == _EE_NOT_FOUND and (named := self._voice_named_for(base)):
            # A language that is only an alias in some voice's list (en-gb, fr-fr): that voice by its name.
            status = self.lib.espeak_SetVoiceByName(f"{named}+{steady}".encode())
        if status != _EE_OK:
            if status == _EE_NOT_FOUND:
                raise self._unknown_voice(voice)
            raise RuntimeError(f"espeak_SetVoiceByName({voice!r}) failed with status {status}")

    def synth(self, text: str, rate_wpm: int, pitch: int) -> tuple[np.ndarray, list]:
        lib = self.lib
        lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0)
        lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
        lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
        lib.espeak_SetParameter(_PARAM_RANGE, 50, 0)
        lib.espeak_ng_SetRandSeed(_RAND_SEED)
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data, len(data))
        status = lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        chunks, events = self._chunks, self._events
        self._chunks, self._events = [], []
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status}")
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return pcm, events


_LOCK = threading.Lock()
_ENGINE: _Espeak | None = None


def _engine() -> _Espeak:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    return _ENGINE


def available_voices() -> list[str]:
    """Language codes espeak-ng accepts as `voice` (e.g. "en", "en-us", "de"); "+variant" suffixes also work."""
    with _LOCK:
        return _engine().languages()


def check_voice(voice: str) -> None:
    """Raise the InputError synthesize() would raise for `voice` (field audio.voice), without speaking."""
    with _LOCK:
        _engine().set_voice(voice)


def synthesize(
    text: str, voice: str = "en", rate_wpm: int | None = None, pitch: int | None = None
) -> Synthesis:
    """Speak `text` with espeak-ng; returns samples with phoneme and word timing (seconds)."""
    if not text or not text.strip():
        raise InputError(None, "audio.text", "expected non-empty text to synthesise")
    rate = DEFAULT_RATE_WPM if rate_wpm is None else int(rate_wpm)
    if not RATE_RANGE_WPM[0] <= rate <= RATE_RANGE_WPM[1]:
        raise InputError(
            None,
            "audio.rate",
            f"expected words per minute in {RATE_RANGE_WPM[0]}..{RATE_RANGE_WPM[1]}, got {rate}",
        )
    pitch_value = DEFAULT_PITCH if pitch is None else int(pitch)
    if not 0 <= pitch_value <= 100:
        raise InputError(None, "audio.pitch", f"expected a pitch in 0..100, got {pitch_value}")
    with _LOCK:
        engine = _engine()
        engine.set_voice(voice)
        pcm, events = engine.synth(text, rate, pitch_value)
        sample_rate = engine.sample_rate
    samples = (pcm.astype(np.float32) / 32768.0).astype(np.float32)
    phonemes, words = _timing(events, text, pcm, sample_rate)
    return Synthesis(samples=samples, sample_rate=sample_rate, phonemes=phonemes, words=words)


def strip_stress(label: str) -> str:
    return label.lstrip(_STRESS_MARKS)


def is_silence(label: str) -> bool:
    return label.startswith(SILENCE) or label == ""


@dataclass
class _WordSpan:
    start: int
    token: int
    phoneme_ends: list[int]


_WORD_PUNCTUATION = ".,;:!?\"'()[]{}«»“”‘’…—–-"


def _tokens(text: str) -> list[tuple[int, int, str]]:
    """Written words as (start, end, word) code point spans: whitespace-separated, outer punctuation stripped."""
    out = []
    for match in re.finditer(r"\S+", text):
        raw = match.group()
        word = raw.strip(_WORD_PUNCTUATION)
        if not word:
            continue
        start = match.start() + raw.index(word)
        out.append((start, start + len(word), word))
    return out


def _closure_start(pcm: np.ndarray, event: int, floor: int, sample_rate: int) -> int:
    """Where the silent closure before a voiceless stop's release begins (else the event itself).

    Inside a word espeak times p/t/k at the release; the closure (digital silence in its output) lies at the
    end of the previous phoneme. Lips and tongue close at its start, so that is where the stop begins.
    """
    block = max(sample_rate // 400, 1)  # 2.5 ms
    lowest = floor + int(_MIN_PREVIOUS_S * sample_rate)
    pos = event
    # A few samples of the previous sound's tail may sit between the silence and the event.
    for _ in range(4):
        seg = pcm[max(pos - block, 0) : pos]
        if len(seg) and np.abs(seg.astype(np.int32)).max() <= _SILENT_PCM:
            break
        pos -= block
    end = pos
    while pos - block >= lowest and np.abs(pcm[pos - block : pos].astype(np.int32)).max() <= _SILENT_PCM:
        pos -= block
    if end - pos < int(_MIN_CLOSURE_S * sample_rate):
        return event
    return pos


def _token_at(tokens: list[tuple[int, int, str]], position: int) -> int:
    """The token containing the 0-based code point `position`, or the first one after it."""
    for i, (_, end, _) in enumerate(tokens):
        if position < end:
            return i
    return len(tokens) - 1


def _timing(
    events: list[tuple[int, int, int, int, str]], text: str, pcm: np.ndarray, sample_rate: int
) -> tuple[tuple[TimedUnit, ...], tuple[TimedUnit, ...]]:
    n_samples = len(pcm)
    # Phoneme starts, with a word's first phoneme pulled back to the word event: espeak emits the word event at
    # the start of a stop's closure, before the phoneme event of the stop itself.
    tokens = _tokens(text)
    starts: list[int] = []
    labels: list[str] = []
    word_of: list[int] = []
    words: list[_WordSpan] = []
    pending_word_start: int | None = None
    for kind, sample, position, _length, label in events:
        sample = min(max(sample, 0), n_samples)
        if kind == _EVENT_WORD and tokens:
            token = _token_at(tokens, position - 1)
            # espeak reads "42" as two words, and a few dictionary phrases ("déjà vu") report a position inside
            # the first word: anything not past the current written word continues it.
            if words and token <= words[-1].token:
                continue
            words.append(_WordSpan(sample, token, []))
            pending_word_start = sample
        elif kind == _EVENT_PHONEME:
            name = strip_stress(label)
            silence = is_silence(name)
            start = sample
            if pending_word_start is not None and not silence:
                start = min(start, pending_word_start)
                pending_word_start = None
            elif name in _RELEASE_TIMED_STOPS and starts:
                start = _closure_start(pcm, start, starts[-1], sample_rate)
            if starts and start < starts[-1]:
                start = starts[-1]
            starts.append(start)
            labels.append(SILENCE if silence else name)
            word_of.append(-1 if silence or not words else len(words) - 1)
    if not starts:
        return (), ()
    if starts[0] > 0:
        starts.insert(0, 0)
        labels.insert(0, SILENCE)
        word_of.insert(0, -1)
    ends = starts[1:] + [n_samples]
    phonemes: list[TimedUnit] = []
    for start, end, label, w in zip(starts, ends, labels, word_of, strict=True):
        if end <= start:
            continue
        if w >= 0:
            words[w].phoneme_ends.append(end)
        if phonemes and phonemes[-1].label == SILENCE and label == SILENCE:
            prev = phonemes.pop()
            phonemes.append(TimedUnit(prev.start, end / sample_rate, SILENCE))
            continue
        phonemes.append(TimedUnit(start / sample_rate, end / sample_rate, label))
    return tuple(phonemes), _word_units(words, tokens, sample_rate)


def _word_units(
    words: list[_WordSpan], tokens: list[tuple[int, int, str]], sample_rate: int
) -> tuple[TimedUnit, ...]:
    spoken = [w for w in words if w.phoneme_ends]
    spans: list[tuple[int, int, int]] = []  # (start, end, token) of each word espeak reported
    for i, w in enumerate(spoken):
        end = max(w.phoneme_ends)
        if i + 1 < len(spoken):
            end = min(end, spoken[i + 1].start)
        if end > w.start:
            spans.append((w.start, end, w.token))
    if not spans:
        return ()
    out: list[TimedUnit] = []
    for k, (start, end, token) in enumerate(spans):
        # Written words espeak folded into a neighbour ("of the" is one dictionary entry) share its time,
        # split by their length in characters; words before the first reported one join it.
        first = 0 if k == 0 else token
        last = spans[k + 1][2] if k + 1 < len(spans) else len(tokens)
        group = tokens[first:last]
        weights = np.array([len(t[2]) for t in group], dtype=np.float64)
        edges = start + (end - start) * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
        for (_, _, word), a, b in zip(group, edges[:-1], edges[1:], strict=True):
            out.append(TimedUnit(float(a) / sample_rate, float(b) / sample_rate, word))
    return tuple(out)
