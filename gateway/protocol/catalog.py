"""The documented Realtime event types (protocol.md §4), GA and beta, and Realtime translations'.

Used to keep metric labels bounded (anything else is counted as ``other``) and as the default
allowlist of client events. Never used to reject server events: a relay passes new ones through.
"""

from __future__ import annotations

CLIENT_EVENT_TYPES = frozenset(
    {
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.retrieve",
        "conversation.item.truncate",
        "conversation.item.delete",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
        "transcription_session.update",
    }
)

SERVER_EVENT_TYPES = frozenset(
    {
        "error",
        "session.created",
        "session.updated",
        "conversation.created",
        "conversation.item.created",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.deleted",
        "conversation.item.truncated",
        "conversation.item.retrieved",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.input_audio_transcription.segment",
        "input_audio_buffer.committed",
        "input_audio_buffer.cleared",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.timeout_triggered",
        "input_audio_buffer.dtmf_event_received",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.cleared",
        "response.created",
        "response.done",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call.failed",
        "mcp_list_tools.in_progress",
        "mcp_list_tools.completed",
        "mcp_list_tools.failed",
        "rate_limits.updated",
        # beta names
        "response.text.delta",
        "response.text.done",
        "response.audio.delta",
        "response.audio.done",
        "response.audio_transcript.delta",
        "response.audio_transcript.done",
        "transcription_session.updated",
    }
)

# Realtime translations' own (session.update, session.created, error... are shared).
TRANSLATION_EVENT_TYPES = frozenset(
    {
        "session.close",
        "session.input_audio_buffer.append",
        "session.closed",
        "session.input_transcript.delta",
        "session.output_transcript.delta",
        "session.output_audio.delta",
    }
)

KNOWN_EVENT_TYPES = CLIENT_EVENT_TYPES | SERVER_EVENT_TYPES | TRANSLATION_EVENT_TYPES


def label_for(event_type: str) -> str:
    """A bounded metric label: the type if documented, else ``other``."""
    return event_type if event_type in KNOWN_EVENT_TYPES else "other"
