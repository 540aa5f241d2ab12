"""A scripted meeting for the simulated meeting bot: a weekly product sync.

Three colleagues (a product manager, an engineer and a designer) go through
their agenda: a bug in report exports, the release date and new onboarding
designs, then the action items. Every line is one sentence, written the way
people speak in a meeting. The company, product and people are fictional.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WEEKLY_SYNC", "Line", "MeetingScript", "Participant"]


@dataclass(frozen=True, slots=True)
class Participant:
    """Someone in the meeting, with the stable id a meeting platform would give them."""

    id: str
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class Line:
    """One sentence; ``speaker`` is the index of a participant in the script."""

    speaker: int
    text: str


@dataclass(frozen=True, slots=True)
class MeetingScript:
    """A whole meeting: who is there and what each of them says, in order."""

    title: str
    participants: tuple[Participant, ...]
    lines: tuple[Line, ...]

    def __post_init__(self) -> None:
        if not self.participants or not self.lines:
            raise ValueError("a meeting needs participants and lines")
        if len({p.id for p in self.participants}) != len(self.participants):
            raise ValueError("participant ids must be unique")
        for line in self.lines:
            if not 0 <= line.speaker < len(self.participants):
                raise ValueError(f"no participant {line.speaker} for line {line.text!r}")
            if not line.text.strip():
                raise ValueError("a line must say something")

    def speaker_of(self, line: Line) -> Participant:
        """The participant who says ``line``."""
        return self.participants[line.speaker]

    def word_count(self) -> int:
        """How many words the whole meeting has."""
        return sum(len(line.text.split()) for line in self.lines)


_PM, _ENG, _DESIGN = 0, 1, 2


def _pm(text: str) -> Line:
    return Line(_PM, text)


def _eng(text: str) -> Line:
    return Line(_ENG, text)


def _design(text: str) -> Line:
    return Line(_DESIGN, text)


WEEKLY_SYNC = MeetingScript(
    title="Weekly product sync",
    participants=(
        Participant("p-1", "Priya Raman", "Product manager"),
        Participant("p-2", "Marcus Okafor", "Backend engineer"),
        Participant("p-3", "Sofia Lindqvist", "Product designer"),
    ),
    lines=(
        _pm("Okay, I think everyone's here, so let's get started with the weekly product sync."),
        _pm(
            "We have three things on the agenda today: the export bug, the release date for "
            "two point four, and a quick look at the new onboarding designs."
        ),
        _eng(
            "Sounds good, can we start with the bug, since that's the one keeping me up at night?"
        ),
        _pm("Sure, go ahead."),
        _eng(
            "So, since Tuesday some customers are getting empty CSV files when they export "
            "reports with more than ten thousand rows."
        ),
        _eng(
            "It turns out the export job times out after thirty seconds, and we write the header "
            "before that, so they get a file with just the column names."
        ),
        _design("Oh, that explains the support tickets, people thought the filters were broken."),
        _pm("How many customers are affected so far?"),
        _eng("About forty accounts, mostly the larger ones on the enterprise plan."),
        _pm("Okay, that's not great, what's the fix?"),
        _eng(
            "Short term, I'm moving large exports to the background queue and emailing a "
            "download link when the file is ready."
        ),
        _eng("The pull request is open already, it just needs a review and some time on staging."),
        _design(
            "If it becomes an email flow, I'd like to change the export dialog so people know "
            "the file is coming later."
        ),
        _design("Right now it just spins forever, which is about the worst thing it could do."),
        _eng("Totally fair, can you send me the copy for that message?"),
        _design("Yes, you'll have it by tomorrow morning."),
        _pm("Great, and let's give support a short note they can send to the affected accounts."),
        _pm("Next up, the release date for two point four."),
        _pm(
            "We told sales we'd ship on the twelfth, is that still realistic with the export fix "
            "in the mix?"
        ),
        _eng("Honestly, it's tight, the fix is small but I don't want to rush the queue changes."),
        _eng("If we move the release to Thursday the nineteenth, we get a full week on staging."),
        _design("The nineteenth works for design, the onboarding screens won't be final before."),
        _pm("Alright, I'd rather ship a week later than ship another broken export."),
        _pm(
            "Let's say the nineteenth, and I'll tell sales today so they can warn their customers."
        ),
        _eng("Can we also freeze features on the fifteenth, so nothing new sneaks in?"),
        _pm("Yes, code freeze on Monday the fifteenth, I'll put it in the release calendar."),
        _pm("Last item, Sofia, do you want to walk us through the onboarding designs?"),
        _design(
            "Sure, the big change is that new users pick their team size first, and we skip the "
            "steps that don't apply to them."
        ),
        _design("In the prototype tests, five out of six people finished setup without any help."),
        _eng("Nice, does that need new backend work, or is it all on the front end?"),
        _design("Just one new field on the workspace, I'll write it up in a ticket."),
        _pm("Love it, let's plan it for the release right after two point four."),
        _pm("Okay, let me recap the action items."),
        _pm("Marcus gets the export fix reviewed and onto staging by Wednesday."),
        _pm("Sofia sends the dialog copy tomorrow and writes the ticket for the workspace field."),
        _pm("And I'll update sales and support about the nineteenth and add the code freeze."),
        _eng("Sounds good to me."),
        _design("Same here, thanks everyone."),
        _pm("Thanks all, see you next week."),
    ),
)
