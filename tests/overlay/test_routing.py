"""The dual-path table and the refusal to gossip private message types."""

from __future__ import annotations

import pytest

from murmur.base.errors import LocalProtocolError
from murmur.overlay.routing import (
    PATH_BY_TYPE,
    MessagePath,
    MessageType,
    PrivatePathUnavailable,
    path_for_topic,
    require_fast_path,
)
from murmur.wire.gossip import is_valid_topic

SEED_TABLE = {
    MessageType.SCP_STATEMENT: MessagePath.FAST,
    MessageType.SCP_NOMINATE: MessagePath.FAST,
    MessageType.BLOCK_HEADER: MessagePath.FAST,
    MessageType.BLOCK_BODY: MessagePath.FAST,
    MessageType.PEER_ANNOUNCEMENT: MessagePath.FAST,
    MessageType.TRANSACTION: MessagePath.PRIVATE,
    MessageType.SYNC_REQUEST: MessagePath.PRIVATE,
}


def test_table_is_the_seeds_dual_path_table() -> None:
    assert dict(PATH_BY_TYPE) == SEED_TABLE
    assert set(PATH_BY_TYPE) == set(MessageType)


@pytest.mark.parametrize("message_type", list(MessageType))
def test_each_type_is_a_valid_topic_routed_by_the_table(message_type: MessageType) -> None:
    assert is_valid_topic(message_type.value)
    assert path_for_topic(message_type.value) is SEED_TABLE[message_type]


def test_unknown_application_topics_are_fast() -> None:
    assert path_for_topic("my_app.events") is MessagePath.FAST
    require_fast_path("my_app.events")


@pytest.mark.parametrize("topic", ["transaction", "sync_request"])
def test_private_topics_are_refused_with_a_clear_error(topic: str) -> None:
    with pytest.raises(PrivatePathUnavailable) as err:
        require_fast_path(topic)
    assert isinstance(err.value, LocalProtocolError)
    assert err.value.topic == topic
    assert str(err.value) == (
        f"topic '{topic}' must travel the private path (onion circuits), which this node does "
        "not offer yet; refusing to send it in the clear"
    )


def test_the_table_cannot_be_edited_at_runtime() -> None:
    with pytest.raises(TypeError):
        PATH_BY_TYPE[MessageType.TRANSACTION] = MessagePath.FAST  # type: ignore[index]
