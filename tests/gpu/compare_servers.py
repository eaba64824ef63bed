# Continuous batching on a CUDA device against the CPU: sends the same 8 greedy chat requests
# (prompts and max_tokens of different lengths), all at once, to two tollgate-infer servers
# started on the same model, one with --device cpu and one with --device cuda
# (--cuda-weights f32), and checks that every sequence generated the same text with the same
# usage. Standard library only; for a machine with a GPU (docs/ENGINE.md), not run by CI.
#   python3 tests/gpu/compare_servers.py http://127.0.0.1:8101 http://127.0.0.1:8102
import json
import sys
import threading
import urllib.request


def ask(base, i, out):
    body = json.dumps({
        "model": "tiny",
        "messages": [{"role": "user", "content": f"request number {i} " + "word " * (i * 7)}],
        "max_tokens": 40 + 10 * i,
        "temperature": 0,
    }).encode()
    request = urllib.request.Request(base + "/v1/chat/completions", body,
                                     {"content-type": "application/json"})
    out[i] = json.loads(urllib.request.urlopen(request, timeout=120).read())


def run_all(base):
    out = {}
    threads = [threading.Thread(target=ask, args=(base, i, out)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def main():
    cpu, cuda = run_all(sys.argv[1]), run_all(sys.argv[2])
    text = lambda r: r["choices"][0]["message"]["content"]
    same_text = sum(text(cpu[i]) == text(cuda[i]) for i in range(8))
    same_usage = all(cpu[i]["usage"] == cuda[i]["usage"] for i in range(8))
    print(f"same text {same_text}/8, same usage {same_usage}")
    return 0 if same_text == 8 and same_usage else 1


if __name__ == "__main__":
    sys.exit(main())
