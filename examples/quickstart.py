"""The quick-start agent of docs/quickstart.md: two steps, no I/O, one trace file."""

import agenttrace


@agenttrace.run("support-agent")
def main(question: str) -> str:
    with agenttrace.step("search", type="tool_call", query=question):
        hits = ["refund policy"]
        agenttrace.set_result(hits)
    with agenttrace.step("answer", type="thought"):
        return f"See: {hits[0]}"


if __name__ == "__main__":
    print(main("how do I get a refund?"))
