"""The conversation store against real SQLite files: conversations, messages and search."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.core.store import Store, fts_query
from app.errors import StoreError

# -- conversations ---------------------------------------------------------------------------


def test_create_and_get_conversation(store: Store) -> None:
    conv = store.create_conversation("Trip plans", system_prompt="Be brief.", model_id="smollm2")
    got = store.get_conversation(conv.id)
    assert got == conv
    assert store.create_conversation().title == "New conversation"


def test_missing_conversation_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        store.get_conversation(999)
    with pytest.raises(StoreError):
        store.rename_conversation(999, "x")
    with pytest.raises(StoreError):
        store.add_message(999, "user", "hello")


def test_list_is_most_recently_updated_first(store: Store) -> None:
    first = store.create_conversation("first")
    second = store.create_conversation("second")
    assert [c.id for c in store.list_conversations()] == [second.id, first.id]
    store.add_message(first.id, "user", "bump")
    assert [c.id for c in store.list_conversations()] == [first.id, second.id]
    assert store.get_conversation(first.id).updated_at >= store.get_conversation(second.id).updated_at


def test_rename_prompt_and_model(store: Store) -> None:
    conv = store.create_conversation()
    store.rename_conversation(conv.id, "Renamed ✨")
    store.set_system_prompt(conv.id, "Answer in French.")
    store.set_conversation_model(conv.id, "llama-3.2-1b")
    got = store.get_conversation(conv.id)
    assert (got.title, got.system_prompt, got.model_id) == ("Renamed ✨", "Answer in French.", "llama-3.2-1b")
    store.set_system_prompt(conv.id, None)
    store.set_conversation_model(conv.id, None)
    got = store.get_conversation(conv.id)
    assert got.system_prompt is None and got.model_id is None


def test_delete_conversation_cascades_to_messages(store: Store) -> None:
    conv = store.create_conversation("doomed")
    keep = store.create_conversation("kept")
    message = store.add_message(conv.id, "user", "unique zebra words")
    store.add_message(keep.id, "user", "other zebra")
    store.delete_conversation(conv.id)
    assert [c.id for c in store.list_conversations()] == [keep.id]
    assert store.messages(conv.id) == []
    with pytest.raises(StoreError):
        store.get_message(message.id)
    assert [hit.conversation_id for hit in store.search("zebra")] == [keep.id]
    assert store.integrity_check() == "ok"


# -- messages --------------------------------------------------------------------------------


def test_add_get_update_messages(store: Store) -> None:
    conv = store.create_conversation()
    user = store.add_message(conv.id, "user", "Hi there")
    reply = store.add_message(conv.id, "assistant", "", status="streaming", model_id="m1", meta={"tokens": 0})
    assert store.get_message(user.id) == user
    assert store.get_message(reply.id) == reply
    store.update_message(reply.id, content="Hello!", status="complete", meta={"tokens": 3, "note": "naïve ☕"})
    got = store.get_message(reply.id)
    assert (got.content, got.status, got.model_id) == ("Hello!", "complete", "m1")
    assert got.meta == {"tokens": 3, "note": "naïve ☕"}
    store.update_message(reply.id, status="stopped")
    assert store.get_message(reply.id).content == "Hello!"  # untouched fields stay
    assert [m.id for m in store.messages(conv.id)] == [user.id, reply.id]


def test_message_validation(store: Store) -> None:
    conv = store.create_conversation()
    with pytest.raises(ValueError):
        store.add_message(conv.id, "system", "nope")
    with pytest.raises(ValueError):
        store.add_message(conv.id, "user", "nope", status="done")
    with pytest.raises(StoreError):
        store.update_message(12345, content="x")
    with pytest.raises(StoreError):
        store.get_message(12345)
    assert store.messages(conv.id) == []


def test_meta_round_trips_and_defaults_to_empty(store: Store) -> None:
    conv = store.create_conversation()
    plain = store.add_message(conv.id, "user", "a")
    rich = store.add_message(conv.id, "assistant", "b", meta={"nested": {"list": [1, 2.5, None, True]}})
    assert store.get_message(plain.id).meta == {}
    assert store.get_message(rich.id).meta == {"nested": {"list": [1, 2.5, None, True]}}


def test_picture_addresses_are_those_some_message_still_holds(store: Store) -> None:
    first, second = "a1" * 32, "b2" * 32
    doomed = store.create_conversation("doomed")
    kept = store.create_conversation("kept")
    store.add_message(doomed.id, "user", "two", meta={"images": [{"sha256": first}, {"sha256": second}]})
    store.add_message(kept.id, "user", "one", meta={"images": [{"sha256": first, "name": "a.png"}], "spoken": True})
    store.add_message(kept.id, "assistant", "no pictures", meta={"images": "not a list"})
    assert store.picture_addresses() == {first, second}
    store.delete_conversation(doomed.id)
    assert store.picture_addresses() == {first}


def test_delete_messages_from(store: Store) -> None:
    conv = store.create_conversation()
    other = store.create_conversation()
    ids = [store.add_message(conv.id, role, f"turn {i}").id for i, role in enumerate(["user", "assistant"] * 3)]
    other_msg = store.add_message(other.id, "user", "elsewhere")
    store.delete_messages_from(conv.id, ids[2])
    assert [m.id for m in store.messages(conv.id)] == ids[:2]
    assert [m.id for m in store.messages(other.id)] == [other_msg.id]
    with pytest.raises(StoreError):
        store.delete_messages_from(conv.id, other_msg.id)  # wrong conversation: nothing deleted
    assert [m.id for m in store.messages(other.id)] == [other_msg.id]
    assert store.search("turn 5") == []  # deleted messages leave the search index too
    assert store.search("turn 1")[0].message_id == ids[1]


def test_mark_interrupted(store: Store) -> None:
    conv = store.create_conversation()
    done = store.add_message(conv.id, "assistant", "finished")
    cut = store.add_message(conv.id, "assistant", "half a rep", status="streaming")
    assert store.mark_interrupted() == 1
    assert store.get_message(cut.id).status == "interrupted"
    assert store.get_message(done.id).status == "complete"
    assert store.mark_interrupted() == 0


def test_threads_share_the_store(store: Store) -> None:
    conv = store.create_conversation()

    def write(n: int) -> None:
        for i in range(25):
            store.add_message(conv.id, "user", f"thread {n} message {i}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.messages(conv.id)) == 100


def test_closed_store_raises_store_error(db_path: Path) -> None:
    opened = Store.open(db_path)
    opened.close()
    opened.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="closed"):
        opened.list_conversations()


# -- search ----------------------------------------------------------------------------------


def test_search_finds_messages_with_snippet(store: Store) -> None:
    conv = store.create_conversation("Cooking")
    store.add_message(conv.id, "user", "How long should I boil an egg for a soft yolk?")
    msg = store.add_message(conv.id, "assistant", "About six minutes for a soft-boiled egg. " + "Filler text. " * 40)
    hits = store.search("soft boiled")
    assert len(hits) == 1
    hit = hits[0]
    assert (hit.conversation_id, hit.title) == (conv.id, "Cooking")
    assert hit.message_id is not None and "soft" in hit.snippet.lower()
    assert len(hit.snippet) < 200
    assert store.search("six minu")[0].message_id == msg.id  # prefix on the last word


def test_search_one_hit_per_conversation_title_first(store: Store) -> None:
    by_title = store.create_conversation("Python tips")
    by_text = store.create_conversation("Misc")
    store.add_message(by_title.id, "user", "python lists")
    store.add_message(by_text.id, "user", "python dicts")
    store.add_message(by_text.id, "assistant", "python sets and python tuples")
    hits = store.search("python")
    assert [h.conversation_id for h in hits] == [by_title.id, by_text.id]
    assert hits[0].message_id is None
    assert store.search("python", limit=1) == hits[:1]


def test_search_ignores_markers_and_accents(store: Store) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "marker", "Earlier messages left the context")
    assert store.search("earlier") == []
    store.add_message(conv.id, "user", "Un café crème, s'il vous plaît")
    assert store.search("cafe creme")[0].conversation_id == conv.id


ODD_QUERIES = '" "" AND OR NOT * c++ -x 😀 ( ) ^ \' \\ % _ NEAR(a content:x'.split() + ["", "   ", "a AND", "NEAR(a b)"]


@pytest.mark.parametrize("query", ODD_QUERIES)
def test_odd_queries_never_raise(store: Store, query: str) -> None:
    conv = store.create_conversation("Odd")
    store.add_message(conv.id, "user", "I like c++ and AND gates, not -x flags 😀")
    hits = store.search(query)
    assert isinstance(hits, list)
    if not query.strip():
        assert hits == []


def test_odd_queries_match_literally(store: Store) -> None:
    conv = store.create_conversation("Chat")
    store.add_message(conv.id, "user", "I like c++ and AND gates")
    assert [h.conversation_id for h in store.search("c++")] == [conv.id]
    assert [h.conversation_id for h in store.search("AND gates")] == [conv.id]
    assert store.search("NOT") == []
    assert store.search("%") == [] and store.search("_") == []  # LIKE wildcards are escaped


def test_fts_query_quotes_every_word() -> None:
    assert fts_query("") is None
    assert fts_query('" * -') is None
    assert fts_query('say "hi" AND go') == '"say" """hi""" "AND" "go"*'


def test_search_follows_updates_and_deletes(store: Store) -> None:
    conv = store.create_conversation()
    msg = store.add_message(conv.id, "assistant", "", status="streaming")
    store.update_message(msg.id, content="The answer involves quantum kittens")
    assert store.search("quantum")[0].message_id == msg.id
    store.update_message(msg.id, content="Now about classical dogs")
    assert store.search("quantum") == []
    assert store.search("classical")[0].message_id == msg.id
    store.delete_messages_from(conv.id, msg.id)
    assert store.search("classical") == []
    assert store.integrity_check() == "ok"
