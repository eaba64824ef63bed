// Load for the cluster suites: `clients` concurrent loops of small chat completions through the
// load balancer, every answer kept (status, request id, body's error shape and Retry-After).
// `stopOn429`: a client stops at its first 429 (a spent budget), as a client that reads
// Retry-After would wait; after a 5xx or a dropped connection a client waits `backoffMs`.
export function startLoad(url, key, { clients = 6, maxTokens = 8, model = 'tiny-llama', headers = {}, stopOn429 = false,
  backoffMs = 250 } = {}) {
  const results = [];
  let stopping = false;
  const loop = async (c) => {
    let i = 0;
    while (!stopping) {
      const started = Date.now();
      const body = JSON.stringify({ model, messages: [{ role: 'user', content: `load ${c} ${i++}` }], max_tokens: maxTokens });
      try {
        const res = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body,
        });
        const text = await res.text();
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        results.push({ status: res.status, id: res.headers.get('x-request-id'), retryAfter: res.headers.get('retry-after'),
          json, text, at: started, ms: Date.now() - started, tokens: json?.usage?.total_tokens ?? 0 });
        if (stopOn429 && res.status === 429) return;
        if (res.status >= 500) await new Promise((r) => setTimeout(r, backoffMs));
      } catch (e) {
        results.push({ status: 0, error: String(e.cause?.code ?? e.message), at: started, ms: Date.now() - started });
        await new Promise((r) => setTimeout(r, backoffMs));
      }
    }
  };
  const loops = Array.from({ length: clients }, (_, c) => loop(c));
  return {
    results,
    async stop() { stopping = true; await Promise.all(loops); return results; },
  };
}
