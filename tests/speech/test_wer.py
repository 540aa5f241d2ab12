"""The WER helper counts word errors the way the speech tests need, after normalisation."""

from __future__ import annotations

import pytest

from tests.speech.wer import normalize, spell_number, word_error_rate, word_errors, words_found


def test_identical_text_has_no_errors() -> None:
    """The same sentence, whatever its case and punctuation, has a WER of 0."""
    text = "Thank you for calling Northwind Outfitters, this is Emma."
    assert word_error_rate(text, text) == 0.0
    assert word_error_rate(text, "thank you for calling northwind outfitters this is emma") == 0.0


def test_substitution_deletion_and_insertion_are_counted() -> None:
    """Each kind of error counts one word against the reference's word count."""
    errors = word_errors("a b c d", "a x c")
    assert (errors.substitutions, errors.deletions, errors.insertions) == (1, 1, 0)
    assert errors.rate == 0.5
    errors = word_errors("the parcel is out", "the parcel is out today")
    assert (errors.substitutions, errors.deletions, errors.insertions) == (0, 0, 1)
    assert errors.rate == 0.25
    assert word_error_rate("hello there", "") == 1.0
    # Insertions can take the rate past 1.
    assert word_error_rate("yes", "yes yes yes") == 2.0


def test_empty_reference_is_refused() -> None:
    """A reference with no words has no defined rate."""
    with pytest.raises(ValueError):
        word_error_rate(" ... ", "something")


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("8", "eight"),
        ("arrive by 6 o'clock", "arrive by six oclock"),
        ("arrive by 6:00", "arrive by six o'clock"),
        ("at 6:30", "at six thirty"),
        ("at 6:05", "at six oh five"),
        ("22 Baker Street", "twenty-two baker street"),
        ("It's 74291", "it's seven four two nine one"),
        ("order 0712", "order zero seven one two"),
        ("1,200 items", "one thousand two hundred items"),
        ("9999", "nine thousand nine hundred ninety nine"),
        ("the 22nd", "the twenty second"),
        ("the 1st and 3rd", "the first and third"),
        ("the 40th", "the fortieth"),
        ("$5", "five dollars"),
        ("50%", "fifty percent"),
        ("2.5", "two point five"),
        ("OK, you\u2019re welcome!", "okay you're welcome"),
        ("You're welcome. Good bye.", "you're welcome goodbye"),
        ("by 6 o clock", "by six o'clock"),
        ("it's 742-91", "it's seven four two nine one"),
        ("it's 7.429.1", "it's seven four two nine one"),
        ("call 555-0123", "call five five five zero one two three"),
    ],
)
def test_normalisation_makes_written_and_spoken_forms_equal(written: str, said: str) -> None:
    """Digits, times, ordinals and apostrophes normalise to the words that were said."""
    assert normalize(written) == normalize(said)
    assert word_error_rate(said, written) == 0.0


def test_spell_number() -> None:
    """Cardinals up to 9999; longer numbers and leading zeros digit by digit."""
    assert spell_number("0") == "zero"
    assert spell_number("105") == "one hundred five"
    assert spell_number("2000") == "two thousand"
    assert spell_number("12345") == "one two three four five"
    assert spell_number("07") == "zero seven"


def test_words_found_reports_keywords_present_after_normalisation() -> None:
    """Keywords are matched as whole normalised words or runs of words."""
    hypothesis = "Sure, it's 74291, under the name Daniel Okafor. By 6:00?"
    keywords = ["okafor", "Daniel", "seven four two nine one", "six o'clock", "parcel", "Dan"]
    assert words_found(keywords, hypothesis) == [
        "okafor",
        "Daniel",
        "seven four two nine one",
        "six o'clock",
    ]
