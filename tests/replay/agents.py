"""Agent scripts the replay tests record and replay (source text, run with sys.executable)."""

from __future__ import annotations

# httpx sync: a JSON POST, a streamed SSE read, a uuid and a random draw; prints all of it.
HTTPX_AGENT = """
import json, os, random, sys, uuid, httpx, agenttrace

@agenttrace.run("httpx-agent")
def main(base, question):
    out = {}
    with agenttrace.step("ask", type="tool_call"):
        r = httpx.post(base + "/json?b=2&a=1", json={"q": question, "n": 1})
        out["id"] = r.json()["id"]
    with agenttrace.step("stream"):
        with httpx.stream("GET", base + "/sse?n=4") as s:
            out["chunks"] = list(s.iter_raw())
            out["chunks"] = [c.decode() for c in out["chunks"]]
    out["uuid"] = str(uuid.uuid4())
    out["random"] = random.random()
    out["urandom"] = os.urandom(8).hex()
    if os.environ.get("EXTRA_ENTROPY"):
        out["extra"] = os.urandom(4).hex()
    return out

print(json.dumps(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "hello")))
"""

# requests and urllib3 PoolManager, gzip and binary bodies, a redirect with a cookie.
REQUESTS_AGENT = """
import hashlib, json, sys, requests, urllib3, agenttrace

@agenttrace.run("requests-agent")
def main(base):
    out = {}
    with agenttrace.step("requests"):
        session = requests.Session()
        out["gzip"] = session.get(base + "/gzip?size=3000").json()["id"]
        out["redirect"] = session.get(base + "/redirect?to=/json").json()["id"]
        out["post"] = session.post(base + "/json", data={"b": "2", "a": "1"}).json()["id"]
    with agenttrace.step("urllib3"):
        pool = urllib3.PoolManager()
        r = pool.request("GET", base + "/binary?size=4096")
        out["binary"] = hashlib.sha256(r.data).hexdigest()
        headers = {"Content-Type": "application/json"}
        r = pool.request("POST", base + "/json", body=json.dumps({"x": [1, 2]}), headers=headers)
        out["urllib3"] = json.loads(r.data)["id"]
    return out

print(json.dumps(main(sys.argv[1])))
"""

# httpx async: many concurrent tasks, each in its own step; REVERSE=1 starts them in the
# opposite order so the interleaving differs from the recording.
ASYNC_AGENT = """
import asyncio, json, os, sys, httpx, agenttrace

N = int(os.environ.get("TASKS", "40"))

async def task(client, base, i):
    with agenttrace.step(f"task-{i % 8}"):
        r = await client.post(base + "/json", json={"task": i})
        return i, r.json()["id"]

@agenttrace.run("async-agent")
async def main(base):
    order = list(range(N))
    if os.environ.get("REVERSE"):
        order.reverse()
    # A few connections for many tasks: the stdlib test server has a small listen backlog.
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=6)) as client:
        results = await asyncio.gather(*(task(client, base, i) for i in order))
    return dict(sorted(results))

print(json.dumps(asyncio.run(main(sys.argv[1]))))
"""

# The openai SDK: a tool call, then a streamed answer.
OPENAI_AGENT = """
import json, sys, openai, agenttrace

TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "look up a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

@agenttrace.run("openai-agent")
def main(base, question):
    client = openai.OpenAI(base_url=base, api_key=sys.argv[3] if len(sys.argv) > 3 else "sk-test")
    messages = [{"role": "user", "content": question}]
    with agenttrace.step("plan", type="thought"):
        first = client.chat.completions.create(model="demo", messages=messages, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    with agenttrace.step("tool", type="tool_call"):
        result = {"city": json.loads(call.function.arguments).get("city"), "temp": 21}
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}]
    with agenttrace.step("answer"):
        parts = []
        for chunk in client.chat.completions.create(model="demo", messages=messages, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
    return {"id": first.id, "tool_call": call.id, "answer": "".join(parts)}

try:
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
except Exception as exc:
    cause = exc
    while cause is not None and not isinstance(cause, agenttrace.AgentTraceError):
        cause = cause.__cause__ or cause.__context__
    print("FAILED", type(exc).__name__, "cause:", type(cause).__name__)
    print(cause)
    sys.exit(3)
"""
