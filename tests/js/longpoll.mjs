// Fidelity check: the official phoenix.js client over LongPoll against trio_phoenix's test
// server (which must be started with longpoll=True and auth_token=True).
//
// Usage: node longpoll.mjs <socket mount url>   (e.g. ws://127.0.0.1:4000/socket)
//
// Prints one JSON line {name, ok, detail} per scenario; exits non-zero if any failed.

import { LongPoll, Socket } from "phoenix";

const URL = process.argv[2];
if (!URL) {
  console.error("usage: node longpoll.mjs <socket mount url>");
  process.exit(2);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function outcome(push) {
  return new Promise((resolve) => {
    push
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout", response: null }));
  });
}

function makeSocket(opts = {}) {
  const socket = new Socket(URL, {
    transport: LongPoll,
    authToken: "good",
    timeout: 2000,
    reconnectAfterMs: () => 50,
    rejoinAfterMs: () => 50,
    ...opts,
  });
  socket.connect();
  return socket;
}

const scenarios = {
  async join_push_broadcast() {
    const socket = makeSocket();
    try {
      const channel = socket.channel("echo:lp", { hello: "lp" });
      const joined = await outcome(channel.join());
      check(joined.status === "ok", `join: ${JSON.stringify(joined)}`);
      check(joined.response.hello === "lp", `join response: ${JSON.stringify(joined)}`);
      const echoed = await outcome(channel.push("echo", { a: 1 }));
      check(echoed.status === "ok" && echoed.response.a === 1, JSON.stringify(echoed));
      const news = new Promise((resolve) => channel.on("news", resolve));
      await outcome(channel.push("broadcast", { event: "news", payload: { v: 2 } }));
      const payload = await news;
      check(payload.v === 2, `broadcast: ${JSON.stringify(payload)}`);
      // Many pushes at once: phoenix.js batches them into ndjson POSTs of up to 100.
      const replies = await Promise.all(
        Array.from({ length: 150 }, (_, n) => outcome(channel.push("echo", { n }))),
      );
      check(
        replies.every((r, n) => r.status === "ok" && r.response.n === n),
        "150 batched pushes",
      );
      return "joined, echoed, broadcast, 150 batched pushes";
    } finally {
      socket.disconnect();
    }
  },

  async refused_token() {
    const socket = makeSocket({ authToken: "bad", reconnectAfterMs: () => 60000 });
    try {
      const error = await new Promise((resolve) => socket.onError(resolve));
      check(error === 403, `expected the 403 error, got ${JSON.stringify(error)}`);
      return "403";
    } finally {
      socket.disconnect();
    }
  },
};

let failures = 0;
for (const [name, run] of Object.entries(scenarios)) {
  try {
    const detail = await Promise.race([
      run(),
      new Promise((_, reject) => setTimeout(() => reject(new Error("timed out")), 8000)),
    ]);
    console.log(JSON.stringify({ name, ok: true, detail }));
  } catch (error) {
    failures += 1;
    console.log(JSON.stringify({ name, ok: false, detail: String(error && error.stack) }));
  }
}
process.exit(failures ? 1 : 0);
