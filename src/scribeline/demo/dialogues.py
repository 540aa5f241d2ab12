"""Scripted customer-service calls for the demo: an AI voice agent and a caller.

Every company, person, order number and phone number here is fictional. Caller
turns are written the way people speak (hesitations, numbers said out loud);
agent turns read like a voice agent's generated text. Speakers alternate and
the agent always speaks first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DIALOGUES", "CallType", "Dialogue", "Speaker", "Turn"]

Speaker = Literal["user", "assistant"]
CallType = Literal["inbound", "outbound"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One utterance: ``user`` is the caller, ``assistant`` the AI agent."""

    speaker: Speaker
    text: str


@dataclass(frozen=True, slots=True)
class Dialogue:
    """A whole call's script. ``call_type`` says who placed the call."""

    title: str
    turns: tuple[Turn, ...]
    call_type: CallType = "inbound"


def _a(text: str) -> Turn:
    return Turn("assistant", text)


def _u(text: str) -> Turn:
    return Turn("user", text)


_BILLING_DISPUTE = Dialogue(
    title="Billing dispute: duplicate charge",
    turns=(
        _a(
            "Thank you for calling Northwind Telecom, this is Ava, your virtual assistant. "
            "How can I help you today?"
        ),
        _u(
            "Hi, yeah, so I was looking at my bill this month and, uh, it looks like I got "
            "charged twice for the same thing?"
        ),
        _a(
            "I'm sorry about that, let's get it sorted out. Can I have the phone number on "
            "the account, please?"
        ),
        _u("Sure, it's four one five, five five five, zero one four two."),
        _a("Thanks. For security, could you tell me the last four digits of the card on file?"),
        _u("Um, eight eight three one."),
        _a(
            "Thank you, you're verified. I can see two charges of $64.50 on the third, both "
            "for the Unlimited Plus plan. Is that the duplicate you mean?"
        ),
        _u("Yes, exactly, the sixty four fifty. It's on there two times."),
        _a(
            "You're right, the second one came from a payment retry. I've refunded $64.50 to "
            "your card ending in 8831. It should show up within three to five business days."
        ),
        _u("Okay, great. Will I get, like, an email or something confirming that?"),
        _a(
            "Yes, a confirmation is on its way to the email on file, with reference number "
            "NW-77219. Is there anything else I can help with?"
        ),
        _u("No, uh, that's it. Thanks, Ava."),
        _a("You're welcome! Thanks for being a Northwind customer, and have a great day."),
    ),
)

_ORDER_STATUS = Dialogue(
    title="Order status: delayed delivery",
    turns=(
        _a(
            "Thanks for calling Tidewater Outfitters, this is Max, your virtual assistant. "
            "What can I do for you today?"
        ),
        _u("Hey, um, I ordered a rain jacket like a week ago and it still hasn't shown up."),
        _a("Sorry to hear that, I can check on it for you. Do you have your order number handy?"),
        _u("Yeah, hold on... okay, it's T W, two nine one, four four eight."),
        _a(
            "Thanks. I found order TW-291448, a Harbor rain jacket in navy. It shipped on "
            "Monday, but the carrier flagged it as delayed at a regional facility."
        ),
        _u("Oh. So, uh, when's it actually gonna get here?"),
        _a(
            "The updated estimate is Thursday by 8 PM. I can also upgrade it to expedited "
            "shipping at no cost, which would get it to you on Wednesday."
        ),
        _u("Yeah, let's do that, Wednesday would be way better."),
        _a("Done. You'll get a new tracking link by text in the next few minutes."),
        _u("Cool. And if it doesn't come Wednesday, what do I do?"),
        _a(
            "Just reply to that text or call us back, and we'll send a replacement or refund "
            "you, whichever you prefer."
        ),
        _u("Alright, sounds good. Thanks."),
        _a("Happy to help. Enjoy the jacket when it arrives!"),
    ),
)

_ACCOUNT_LOCKOUT = Dialogue(
    title="Account lockout and password reset",
    turns=(
        _a(
            "Thank you for calling Cobaltline Bank, I'm Ava, a virtual assistant. How can I "
            "help you today?"
        ),
        _u(
            "Hi, uh, I'm locked out of my online banking. I think I typed the password wrong "
            "too many times."
        ),
        _a("I can help you get back in. First, can you tell me your full name and date of birth?"),
        _u(
            "Yeah, it's Jordan Reyes, and my birthday is, um, June fourteenth, "
            "nineteen eighty nine."
        ),
        _a(
            "Thank you, Jordan. I'm texting a six digit code to your mobile number ending in "
            "0176. Can you read it back to me when it arrives?"
        ),
        _u("Okay, got it. It's four nine two... seven one zero."),
        _a(
            "Perfect, that matches. I've unlocked your account and sent a password reset link "
            "to the email address on file."
        ),
        _u("Okay. Does the link, like, expire or anything?"),
        _a(
            "It's valid for thirty minutes. Once you set a new password, you can sign in right "
            "away."
        ),
        _u("Got it. Oh, and, uh, is there a way to stop this from happening again?"),
        _a(
            "You can turn on fingerprint sign-in in the mobile app, so you won't have to type "
            "your password every time. Would you like me to text you the steps?"
        ),
        _u("Sure, yeah, that'd be helpful."),
        _a("Sent. Is there anything else I can help you with today?"),
        _u("Nope, that's everything. Thanks a lot."),
        _a("You're welcome, Jordan. Have a good one."),
    ),
)

_APPOINTMENT = Dialogue(
    title="Rescheduling a dental appointment",
    turns=(
        _a(
            "Hi, thanks for calling Brightside Dental, this is Ava, the virtual assistant. "
            "How can I help?"
        ),
        _u(
            "Hi, um, I have a cleaning on Thursday and I need to move it, something came up "
            "at work."
        ),
        _a("No problem. Can I get the patient's name and date of birth?"),
        _u("Sure, it's Priya Shah, S H A H, and it's October second, nineteen ninety two."),
        _a(
            "Thanks, Priya. I see your cleaning with Dr. Okafor this Thursday at 10:30 AM. "
            "What days work better for you?"
        ),
        _u("Uh, anything next week, ideally, like, early morning? Before nine if you have it."),
        _a(
            "Dr. Okafor has an 8 AM opening next Tuesday, or 8:30 AM next Friday. Would either "
            "of those work?"
        ),
        _u("Tuesday at eight is perfect."),
        _a(
            "Great, you're booked for Tuesday at 8 AM, and I've cancelled the Thursday "
            "appointment. Would you like a text reminder the day before?"
        ),
        _u("Yes please."),
        _a(
            "All set. Please try to arrive about ten minutes early. Anything else I can do for you?"
        ),
        _u("No, that's it, thank you so much."),
        _a("You're welcome, Priya. See you Tuesday!"),
    ),
)

_PLAN_UPGRADE = Dialogue(
    title="Internet plan upgrade",
    turns=(
        _a(
            "Thank you for calling Skyreach Internet, this is Ava, your virtual assistant. "
            "How can I help you today?"
        ),
        _u(
            "Hey, so, my internet's been kinda slow since we all started working from home, "
            "and I was wondering about, uh, faster plans?"
        ),
        _a("I can help with that. May I have the account holder's name and service address?"),
        _u("Yeah, it's Sam Whitaker, at, uh, twelve forty Larch Street."),
        _a(
            "Thanks, Sam. You're on Basic 100 at $45 a month. We also have Fiber 500 for $60 "
            "a month, or Fiber Gig for $80 a month."
        ),
        _u("Hmm. What's the difference, like, for three people on video calls all day?"),
        _a(
            "Fiber 500 easily handles several HD video calls at once. Fiber Gig is mostly "
            "worth it if you also upload large files or do a lot of gaming."
        ),
        _u("Okay, yeah, the five hundred one sounds fine. Is there, like, a contract?"),
        _a(
            "No contract. The new speed activates within an hour, and your next bill is "
            "prorated, so you only pay the difference for the rest of this cycle."
        ),
        _u("Oh nice. And do I need a new router?"),
        _a(
            "Your current router supports up to one gigabit, so you're all set. Shall I go "
            "ahead and upgrade you to Fiber 500?"
        ),
        _u("Yes, go ahead."),
        _a(
            "Done! You're now on Fiber 500. Restart your router in about an hour to get the "
            "full speed. Anything else?"
        ),
        _u("No, that's great, thanks."),
        _a("Thanks for choosing Skyreach. Enjoy the faster internet!"),
    ),
)

_REFUND = Dialogue(
    title="Refund for an item that arrived damaged",
    turns=(
        _a(
            "Thank you for calling Maple and Moss Home, this is Ava, your virtual assistant. "
            "How can I help you?"
        ),
        _u(
            "Hi. Yeah, so I got a lamp delivered yesterday and the, uh, the glass shade was "
            "completely cracked."
        ),
        _a(
            "Oh no, I'm sorry it arrived damaged. Could you give me the email address on the order?"
        ),
        _u("Sure, it's dana dot k at example dot com."),
        _a(
            "Thanks, Dana. I see the Willow table lamp for $129, delivered yesterday. Would "
            "you like a replacement or a full refund?"
        ),
        _u("Honestly, um, I'd rather just get a refund. I don't want to wait another two weeks."),
        _a(
            "Understood. I've started a full refund of $129 to your original payment method. "
            "You don't need to send the lamp back, just dispose of it safely."
        ),
        _u("Oh, okay, that's easy. How long does the refund take?"),
        _a(
            "Usually five to seven business days, depending on your bank. You'll get an email "
            "confirmation shortly."
        ),
        _u("Perfect. Thank you."),
        _a("You're welcome, Dana. Sorry again for the trouble, and have a great evening."),
    ),
)

_PHARMACY_REFILL = Dialogue(
    title="Outbound prescription refill reminder",
    call_type="outbound",
    turns=(
        _a(
            "Hi, this is Ava, an automated assistant calling from Harborview Pharmacy. Am I "
            "speaking with Michael Chen?"
        ),
        _u("Uh, yeah, this is Michael."),
        _a(
            "Thanks, Michael. Your prescription is due for a refill, and I can set that up "
            "for you right now. For privacy, could you confirm your date of birth?"
        ),
        _u("Sure. March, uh, third, nineteen seventy six."),
        _a("Thank you. Would you like it ready for pickup at our Bayside location?"),
        _u("Yeah, that works. When would it be ready?"),
        _a("It will be ready tomorrow after 2 PM, and your copay will be $10."),
        _u("Okay, tomorrow afternoon is fine."),
        _a(
            "Great, your refill is confirmed. We'll text you when it's ready. Is there anything "
            "else I can help with?"
        ),
        _u("Nope, that's all. Thanks for the call."),
        _a("You're welcome, Michael. Have a nice day."),
    ),
)

_AUTO_SERVICE = Dialogue(
    title="Outbound service approval from an auto shop",
    call_type="outbound",
    turns=(
        _a(
            "Hi, this is Ava, a virtual assistant calling from Summit Auto Care about your car "
            "that's in for service. Is this Alex?"
        ),
        _u("Yeah, speaking."),
        _a(
            "Great. Your oil change is done, and during the inspection the technician noticed "
            "your front brake pads are down to about three millimeters. We'd recommend "
            "replacing them soon."
        ),
        _u("Oh, huh. Uh, how much would that be?"),
        _a(
            "Front brake pads with labor come to $189. If you approve it now, we can have the "
            "car ready today by 5 PM."
        ),
        _u("Hmm. Is it, like, dangerous to wait a couple weeks?"),
        _a(
            "It's not an emergency, but the technician recommends doing it within the next few "
            "hundred miles to avoid damaging the rotors."
        ),
        _u("Okay, yeah, let's just do it today then."),
        _a(
            "Sounds good, I've approved the brake job. Your new total is $238.95 including the "
            "oil change. We'll text you when the car is ready."
        ),
        _u("Alright. Five o'clock, you said?"),
        _a("Yes, by 5 PM today. Anything else I can help with?"),
        _u("No, that's it. Thanks."),
        _a("Thank you, Alex. See you this afternoon."),
    ),
)

DIALOGUES: tuple[Dialogue, ...] = (
    _BILLING_DISPUTE,
    _ORDER_STATUS,
    _ACCOUNT_LOCKOUT,
    _APPOINTMENT,
    _PLAN_UPGRADE,
    _REFUND,
    _PHARMACY_REFILL,
    _AUTO_SERVICE,
)
"""All demo scripts; the simulator picks among them at random."""
