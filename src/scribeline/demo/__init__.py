"""The ``scribeline demo`` call simulator: scripted calls streamed as live transcripts."""

from scribeline.demo.dialogues import DIALOGUES, Dialogue, Turn
from scribeline.demo.simulator import (
    CallSink,
    SleepFn,
    new_call_sid,
    play_call,
    random_phone_number,
    ring_out,
    run_simulation,
)

__all__ = [
    "DIALOGUES",
    "CallSink",
    "Dialogue",
    "SleepFn",
    "Turn",
    "new_call_sid",
    "play_call",
    "random_phone_number",
    "ring_out",
    "run_simulation",
]
