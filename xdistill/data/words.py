"""Word splitting of raw text: a property of the task, not of the teacher's tokenizer.

NER gold data (WikiANN/PAN-X, CoNLL) is tokenized into words with punctuation split off
(``Paris .``, ``( München )``) and, for Chinese and Japanese, one character per word. Raw text
that reaches a token-classification model (unlabeled transfer text, generated text, ``predict``
input) must be split the same way, whatever the teacher: an XLM-R tokenizer's own pre-tokenizer
splits on whitespace only and would keep ``Paris.`` as one word. Labels then align to subwords
through the words (``word_ids()``), as for the gold data.

Splitters are registered by name in :data:`WORD_SPLITTERS`; a task file picks one with
``word_splitter = "punctuation"`` (the default for token classification).
"""

from __future__ import annotations

from typing import Callable, Sequence

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel

from ..errors import ConfigError

#: at most this many texts are split one call each, not as a (multi-threaded) batch
SEQUENTIAL_TEXTS = 4

#: a word and its character span in the text: ``(word, start, end)`` with ``text[start:end] == word``
Span = tuple[str, int, int]


class WordSplitter:
    """Splits texts into words with character offsets, with a ``tokenizers`` normaliser and
    pre-tokenizer run in Rust over whole batches (no per-character Python loop).

    A one-entry ``WordLevel`` model maps every pre-token to ``[UNK]``, so the encoding's offsets
    are exactly the words' spans in the original text. Characters the normaliser removes
    (control characters) belong to no word.
    """

    def __init__(self, name: str, normalizer, pre_tokenizer):
        self.name = name
        tok = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
        if normalizer is not None:
            tok.normalizer = normalizer
        tok.pre_tokenizer = pre_tokenizer
        self._tok = tok

    def spans(self, texts: Sequence[str]) -> list[list[Span]]:
        """Per text, its words as ``(word, start, end)`` character spans, in order."""
        texts = list(texts)
        if not texts:
            return []
        if len(texts) <= SEQUENTIAL_TEXTS:
            # a few texts (a single-sentence request): one call each, without handing them to the
            # Rust thread pool, whose workers would wait for the cores an ONNX Runtime session holds
            encodings = [self._tok.encode(t, add_special_tokens=False) for t in texts]
        else:
            encodings = self._tok.encode_batch(texts, add_special_tokens=False)
        return [[(text[s:e], s, e) for s, e in enc.offsets if e > s] for text, enc in zip(texts, encodings)]

    def words(self, texts: Sequence[str]) -> list[list[str]]:
        """Per text, its words (see :meth:`spans`)."""
        return [[w for w, _, _ in ws] for ws in self.spans(texts)]

    def __repr__(self) -> str:
        return f"WordSplitter({self.name!r})"


def punctuation_splitter() -> WordSplitter:
    """Whitespace, then every punctuation character and every CJK ideograph is a word of its
    own: BERT's ``BasicTokenizer`` rules (Devlin et al. 2019, sec. A.2; ``BertNormalizer`` with
    case and accents kept, then ``BertPreTokenizer``), which is how the PAN-X/WikiANN files and
    mBERT's own pre-tokenizer split text."""
    return WordSplitter("punctuation",
                        normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                                   lowercase=False),
                        pre_tokenizers.BertPreTokenizer())


def whitespace_splitter() -> WordSplitter:
    """Whitespace only (for gold data whose words keep their punctuation)."""
    return WordSplitter("whitespace", None, pre_tokenizers.WhitespaceSplit())


#: name -> factory of a :class:`WordSplitter`
WORD_SPLITTERS: dict[str, Callable[[], WordSplitter]] = {
    "punctuation": punctuation_splitter,
    "whitespace": whitespace_splitter,
}


def make_word_splitter(name: str, where: str = "word_splitter") -> WordSplitter:
    """The registered splitter ``name``.

    Raises:
        ConfigError: an unknown name (``where`` names the task file key).
    """
    if name not in WORD_SPLITTERS:
        raise ConfigError(f"{where}: unknown word splitter {name!r}; expected one of {', '.join(WORD_SPLITTERS)}")
    return WORD_SPLITTERS[name]()
