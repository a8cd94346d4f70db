"""The official `openai` Python client against a running candor server.

Usage: python3 openai_client.py BASE_URL MODEL
Exits non-zero (with an assertion message) on the first thing that does not work.
"""
import json
import sys
import time

import openai

base, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-candor-test")

# Models.
ids = [m.id for m in client.models.list().data]
assert model in ids, ids
assert client.models.retrieve(model).id == model

# Chat, non-streaming.
chat = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "What is the capital of France? One word."}],
    max_tokens=8,
    temperature=0,
)
text = chat.choices[0].message.content
assert chat.object == "chat.completion", chat.object
assert "Paris" in text, text
assert chat.choices[0].finish_reason in ("stop", "length"), chat.choices[0].finish_reason
assert chat.usage.prompt_tokens > 0 and chat.usage.completion_tokens > 0, chat.usage

# Chat, streaming, with usage.
pieces, finish, usage = [], None, None
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Count from 1 to 5."}],
    max_tokens=12,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
    extra_body={"ignore_eos": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
assert "".join(pieces), "no streamed text"
assert finish == "length", finish
assert usage is not None and usage.completion_tokens == 12, usage

# Text completion with logprobs and a stop string.
comp = client.completions.create(
    model=model, prompt="1, 2, 3, 4,", max_tokens=10, temperature=0, logprobs=2, stop=[" 7"]
)
choice = comp.choices[0]
assert " 7" not in choice.text, choice.text
assert choice.logprobs is not None and len(choice.logprobs.tokens) > 0, choice.logprobs
assert comp.usage.completion_tokens >= 1, comp.usage

# Tool calls, parsed by the client's own types, whole and streamed.
weather = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ask = [{"role": "user", "content": "What's the weather like in Paris today?"}]
chat = client.chat.completions.create(model=model, messages=ask, tools=[weather], max_tokens=60, temperature=0)
choice = chat.choices[0]
assert choice.finish_reason == "tool_calls", choice
call = choice.message.tool_calls[0]
assert call.type == "function" and call.function.name == "get_weather", call
assert json.loads(call.function.arguments)["city"] == "Paris", call
streamed = {}
stream = client.chat.completions.create(
    model=model, messages=ask, tools=[weather], max_tokens=60, temperature=0, stream=True
)
for chunk in stream:
    for c in chunk.choices:
        for d in c.delta.tool_calls or []:
            entry = streamed.setdefault(d.index, {"name": "", "arguments": ""})
            entry["name"] += d.function.name or ""
            entry["arguments"] += d.function.arguments or ""
        if c.finish_reason:
            finish = c.finish_reason
assert finish == "tool_calls", finish
assert streamed[0]["name"] == "get_weather", streamed
assert json.loads(streamed[0]["arguments"]) == json.loads(call.function.arguments), streamed
history = ask + [
    choice.message.model_dump(exclude_none=True),
    {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21, "sky": "sunny"}'},
]
answer = client.chat.completions.create(
    model=model, messages=history, tools=[weather], tool_choice="none", max_tokens=30, temperature=0
)
assert answer.choices[0].message.content, answer

# Structured outputs through the client's pydantic helper (a strict json_schema).
import pydantic


class City(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=20)
    country: str = pydantic.Field(max_length=20)
    population: int


completions = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse
parsed = completions(
    model=model,
    messages=[{"role": "user", "content": "Describe Paris as JSON."}],
    response_format=City,
    max_tokens=80,
    temperature=0,
)
city = parsed.choices[0].message.parsed
assert isinstance(city, City), parsed
assert parsed.choices[0].finish_reason == "stop", parsed

# Embeddings: the client asks for base64 unless told otherwise and decodes it.
vectors = client.embeddings.create(model=model, input=["The cat sat on the mat.", "fn main() {}"])
assert [d.index for d in vectors.data] == [0, 1], vectors
assert all(len(d.embedding) > 0 for d in vectors.data), vectors
assert abs(sum(x * x for x in vectors.data[0].embedding) - 1.0) < 1e-3
floats = client.embeddings.create(model=model, input="The cat sat on the mat.", encoding_format="float")
same = sum(a * b for a, b in zip(floats.data[0].embedding, vectors.data[0].embedding))
assert same > 0.995, same
assert vectors.usage.prompt_tokens > floats.usage.prompt_tokens, vectors.usage
short = client.embeddings.create(model=model, input="The cat sat on the mat.", dimensions=32)
assert len(short.data[0].embedding) == 32, short

# The Responses API: text, streamed events, a call and its output sent back, parsed JSON.
resp = client.responses.create(
    model=model, input="What is the capital of France? One word.", max_output_tokens=8, temperature=0
)
assert resp.status == "completed", resp
assert "Paris" in resp.output_text, resp
assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0, resp.usage
assert client.responses.retrieve(resp.id).output_text == resp.output_text
nxt = client.responses.create(
    model=model, input="And of Italy?", previous_response_id=resp.id, max_output_tokens=8, temperature=0
)
assert "Rome" in nxt.output_text, nxt
queued = client.responses.create(
    model=model, input="Name three colors.", max_output_tokens=8, temperature=0, background=True
)
assert queued.status in ("queued", "in_progress", "completed"), queued
for _ in range(300):
    polled = client.responses.retrieve(queued.id)
    if polled.status not in ("queued", "in_progress"):
        break
    time.sleep(0.1)
assert polled.status in ("completed", "incomplete") and polled.output_text, polled
client.responses.delete(resp.id)
try:
    client.responses.retrieve(resp.id)
except openai.NotFoundError:
    pass
else:
    raise AssertionError("a deleted response was still retrieved")
kinds, text, final = [], [], None
with client.responses.create(
    model=model, input="Count from 1 to 5.", max_output_tokens=12, temperature=0, stream=True
) as events:
    for event in events:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text.append(event.delta)
        if event.type in ("response.completed", "response.incomplete"):
            final = event.response
assert kinds[0] == "response.created", kinds
assert final is not None and final.output_text == "".join(text), (final, text)
# A streamed background response, left after its first events and picked up again.
with client.responses.create(
    model=model, input="Count from 1 to 5.", max_output_tokens=12, temperature=0,
    stream=True, background=True,
) as events:
    seen = [next(iter(events)) for _ in range(2)]
assert [e.type for e in seen] == ["response.created", "response.queued"], seen
picked_up, last = [], None
for event in client.responses.retrieve(seen[0].response.id, stream=True, starting_after=1):
    picked_up.append(event)
    last = event
assert picked_up[0].sequence_number == 2 and picked_up[0].type == "response.in_progress", picked_up
assert last.type in ("response.completed", "response.incomplete"), last
assert last.response.output_text == final.output_text, (last, final)
weather_flat = {"type": "function", **weather["function"]}
called = client.responses.create(
    model=model, input=ask, tools=[weather_flat], max_output_tokens=60, temperature=0
)
calls = [item for item in called.output if item.type == "function_call"]
assert calls and calls[0].name == "get_weather", called
assert json.loads(calls[0].arguments)["city"] == "Paris", calls
followed = client.responses.create(
    model=model,
    input=ask
    + [item.model_dump(exclude_none=True) for item in called.output]
    + [{"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"temperature": 21}'}],
    tools=[weather_flat],
    tool_choice="none",
    max_output_tokens=30,
    temperature=0,
)
assert followed.output_text, followed
described = client.responses.parse(
    model=model, input="Describe Paris as JSON.", text_format=City, max_output_tokens=80, temperature=0
)
assert isinstance(described.output_parsed, City), described

# Conversations: a response joins one, whose items then list both turns.
conv = client.conversations.create(
    items=[{"type": "message", "role": "user", "content": "What is the capital of France? One word."},
           {"type": "message", "role": "assistant", "content": "Paris"}],
    metadata={"topic": "capitals"},
)
assert conv.object == "conversation" and conv.metadata == {"topic": "capitals"}, conv
joined = client.responses.create(
    model=model, conversation=conv.id, input="And of Italy? One word.", max_output_tokens=8, temperature=0
)
assert "Rome" in joined.output_text, joined
listed = list(client.conversations.items.list(conv.id, order="asc"))
assert [i.role for i in listed] == ["user", "assistant", "user", "assistant"], listed
assert listed[-1].content[0].text == joined.output_text, listed[-1]
client.conversations.items.delete(listed[0].id, conversation_id=conv.id)
assert len(list(client.conversations.items.list(conv.id))) == 3
assert client.conversations.update(conv.id, metadata={"topic": "europe"}).metadata == {"topic": "europe"}
assert client.conversations.delete(conv.id).deleted

# An error comes back as the client's typed exception.
try:
    client.chat.completions.create(model=model, messages=[], max_tokens=4)
except openai.BadRequestError as e:
    assert e.status_code == 400, e
else:
    raise AssertionError("empty messages were accepted")

print("openai client: ok")
