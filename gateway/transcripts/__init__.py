"""Call transcripts: one JSON Lines file per call, written as the call goes.

:class:`TranscriptBuilder` is pure: server events (GA names; the beta ones are understood too)
go in, records come out (:mod:`~gateway.transcripts.builder`). :class:`TranscriptWriter` owns one
file and appends records to it from a task of its own, so the relay never waits on the disk
(:mod:`~gateway.transcripts.writer`). :mod:`~gateway.transcripts.records` encodes a record as a
line and reads a transcript back. Every record is one JSON object on one line with ``ts`` (Unix
time) and ``kind``:

``call_started``
    ``call_id, upstream_call_id, model, voice`` — never instructions, tools or secrets.
``user``
    ``item_id, order, source, text``: a transcribed turn (``source: "audio"``, from
    ``conversation.item.input_audio_transcription.completed``; ``text`` is ``null`` and ``error``
    set when transcription failed) or a typed message (``source: "text"``).
``assistant``
    ``item_id, order, response_id, modality, text``: what the model generated, once its
    transcript (or text) is done.
``assistant_truncated``
    ``item_id, response_id, text, audio_end_ms, cut_by, audio_ms, basis``: the user interrupted
    and only the first ``audio_end_ms`` of the item's audio was played. ``text`` is the part that
    was heard; it replaces the ``assistant`` record's text (see :func:`spoken_text`). ``cut_by``
    says where ``audio_end_ms`` comes from: ``conversation.item.truncated`` (the server's own
    count), or ``playback_time`` (from ``output_audio_buffer.started`` to the ``cleared`` — or,
    for a cancelled response, ``stopped`` — that cut it off, when the server sent no truncation).
    ``basis`` says how the item's whole length ``audio_ms`` was found: ``audio_tokens`` (50 ms per
    output audio token of its ``response.done``) or ``speech_rate`` (15 characters a second).
``tool_call``
    ``call_id, name, arguments, output, status, seconds``: a server tool run (from the relay).
``usage``
    ``response_id, status, usage``: ``response.done``'s usage object, verbatim.
``call_ended``
    ``reason, outcome, duration_s``.

``order`` numbers the conversation's items in the order the server added them; records are
written when their content is known, and a user transcript often arrives after the answer has
started, so sort turns by ``order`` (:func:`conversation` does) rather than by file position.
"""

from gateway.transcripts.builder import (
    CHARS_PER_SECOND,
    MS_PER_AUDIO_TOKEN,
    TranscriptBuilder,
    cut_text,
)
from gateway.transcripts.records import Record, conversation, encode_record, spoken_text
from gateway.transcripts.writer import MAX_QUEUED_RECORDS, TranscriptWriter, prepare_directory

__all__ = [
    "CHARS_PER_SECOND",
    "MAX_QUEUED_RECORDS",
    "MS_PER_AUDIO_TOKEN",
    "Record",
    "TranscriptBuilder",
    "TranscriptWriter",
    "conversation",
    "cut_text",
    "encode_record",
    "prepare_directory",
    "spoken_text",
]
