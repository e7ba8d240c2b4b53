// Fidelity check: the official phoenix.js client against trio_phoenix's test server.
//
// Usage: node scenarios.mjs <socket mount url>   (e.g. ws://127.0.0.1:4000/socket)
//
// The server runs the demo channels (room:*, echo:*) plus a control:* channel whose
// "disconnect" event makes the server disconnect a socket id (close 1001), with
// auth_token enabled and a connect hook that refuses the token "bad" and uses the "id"
// param as the socket id. Each scenario prints one JSON line {name, ok, detail}; the exit
// status is non-zero if any scenario failed.

import { Presence, Socket } from "phoenix";
import { WebSocket } from "ws";

const URL = process.argv[2];
if (!URL) {
  console.error("usage: node scenarios.mjs <socket mount url>");
  process.exit(2);
}

const SCENARIO_MS = 4000;

function makeSocket(opts = {}) {
  const socket = new Socket(URL, {
    transport: WebSocket,
    authToken: "good",
    timeout: 1000,
    heartbeatIntervalMs: 1000,
    reconnectAfterMs: () => 50,
    rejoinAfterMs: () => 50,
    ...opts,
  });
  socket.connect();
  return socket;
}

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Resolve with the reply of a push (or join) as {status, response}.
function outcome(push) {
  return new Promise((resolve) => {
    push
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout", response: null }));
  });
}

async function joined(channel) {
  const result = await outcome(channel.join());
  check(result.status === "ok", `join of ${channel.topic}: ${JSON.stringify(result)}`);
  return result.response;
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function same(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  check(a === e, `${what}: expected ${e}, got ${a}`);
}

function bytes(buffer) {
  check(buffer instanceof ArrayBuffer, `expected an ArrayBuffer, got ${typeof buffer}`);
  return Array.from(new Uint8Array(buffer));
}

function waitFor(predicate, what, ms = 2000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      if (predicate()) resolve();
      else if (Date.now() - started > ms) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 10);
    };
    poll();
  });
}

const scenarios = {
  async join_ok(sockets) {
    const socket = makeSocket();
    sockets.push(socket);
    const response = await joined(socket.channel("room:lobby", { user: "ann" }));
    same(response, { topic: "room:lobby", user: "ann" }, "join response");
    return "joined room:lobby";
  },

  async join_error(sockets) {
    const socket = makeSocket();
    sockets.push(socket);
    const channel = socket.channel("echo:reject", { reject: "unauthorized" });
    const result = await outcome(channel.join());
    channel.leave();
    same(result, { status: "error", response: { reason: "unauthorized" } }, "join reply");
    return "join refused";
  },

  async unmatched_topic(sockets) {
    const socket = makeSocket();
    sockets.push(socket);
    const channel = socket.channel("nope:1");
    const result = await outcome(channel.join());
    channel.leave();
    same(result, { status: "error", response: { reason: "unmatched topic" } }, "join reply");
    return "unmatched topic";
  },

  async echo_reply(sockets) {
    const socket = makeSocket();
    sockets.push(socket);
    const channel = socket.channel("echo:1");
    await joined(channel);
    const result = await outcome(channel.push("echo", { hello: "world", n: [1, 2] }));
    same(result, { status: "ok", response: { hello: "world", n: [1, 2] } }, "echo");
    return "echoed";
  },

  async error_reply(sockets) {
    const socket = makeSocket();
    sockets.push(socket);
    const channel = socket.channel("echo:1");
    await joined(channel);
    const result = await outcome(channel.push("error", { why: "because" }));
    same(result, { status: "error", response: { why: "because" } }, "error reply");
    return "error reply";
  },

  async noreply_times_out(sockets) {
    const socket = makeSocket();
    sockets.push(socket);
    const channel = socket.channel("echo:1");
    await joined(channel);
    const result = await outcome(channel.push("noreply", {}, 200));
    same(result.status, "timeout", "noreply push");
    return "timed out as expected";
  },

  async broadcast(sockets) {
    const a = makeSocket();
    const b = makeSocket();
    sockets.push(a, b);
    const ca = a.channel("echo:bcast");
    const cb = b.channel("echo:bcast");
    await joined(ca);
    await joined(cb);
    const gotA = deferred();
    const gotB = deferred();
    ca.on("news", gotA.resolve);
    cb.on("news", gotB.resolve);
    const result = await outcome(ca.push("broadcast", { event: "news", payload: { n: 1 } }));
    same(result.status, "ok", "broadcast reply");
    same(await gotA.promise, { n: 1 }, "sender's copy");
    same(await gotB.promise, { n: 1 }, "other subscriber's copy");
    return "both subscribers got it";
  },

  async server_push(sockets) {
    const socket = makeSocket();
    sockets.push(socket);
    const channel = socket.channel("echo:1");
    await joined(channel);
    const got = deferred();
    channel.on("hello", got.resolve);
    await outcome(channel.push("push", { event: "hello", payload: { x: 1 } }));
    same(await got.promise, { x: 1 }, "pushed payload");
    return "push received";
  },

  async binary_push(sockets) {
    const socket = makeSocket();
    sockets.push(socket);
    const channel = socket.channel("echo:1");
    await joined(channel);
    const got = deferred();
    channel.on("bin", got.resolve);
    await outcome(channel.push("push_binary", { event: "bin", bytes: [1, 2, 3] }));
    same(bytes(await got.promise), [1, 2, 3], "binary push");
    const bcast = deferred();
    channel.on("bbin", bcast.resolve);
    await outcome(channel.push("broadcast_binary", { event: "bbin", bytes: [9] }));
    same(bytes(await bcast.promise), [9], "binary broadcast");
    return "ArrayBuffer payloads";
  },

  async binary_reply(sockets) {
    const socket = makeSocket();
    sockets.push(socket);
    const channel = socket.channel("echo:1");
    await joined(channel);
    const payload = new Uint8Array([0, 255, 7]).buffer;
    const result = await outcome(channel.push("echo", payload));
    same(result.status, "ok", "binary echo status");
    same(bytes(result.response), [0, 255, 7], "binary echo response");
    return "binary round trip";
  },

  async crash_then_rejoin(sockets) {
    const socket = makeSocket();
    sockets.push(socket);
    const channel = socket.channel("echo:crash", { attempt: 1 });
    let joins = 0;
    const rejoined = deferred();
    const errored = deferred();
    channel.onError(errored.resolve);
    channel.join().receive("ok", () => {
      joins += 1;
      if (joins === 2) rejoined.resolve();
    });
    await waitFor(() => joins === 1, "the first join");
    channel.push("crash", {});
    same(await errored.promise, { reason: "channel_crash" }, "onError payload");
    await rejoined.promise;
    const result = await outcome(channel.push("echo", { after: "rejoin" }));
    same(result.response, { after: "rejoin" }, "echo after rejoin");
    return "errored, then rejoined";
  },

  async server_stop(sockets) {
    const socket = makeSocket();
    sockets.push(socket);
    const channel = socket.channel("echo:stop");
    await joined(channel);
    const closed = deferred();
    channel.onClose(closed.resolve);
    channel.push("stop", {});
    same(await closed.promise, {}, "onClose payload");
    same(channel.state, "closed", "channel state");
    return "closed by the server";
  },

  async leave(sockets) {
    const socket = makeSocket();
    sockets.push(socket);
    const channel = socket.channel("echo:leave");
    await joined(channel);
    const result = await outcome(channel.leave());
    same(result.status, "ok", "leave reply");
    same(channel.state, "closed", "channel state");
    // The server closed its side too: a new join on the topic is a fresh channel.
    const again = socket.channel("echo:leave", { second: true });
    same(await joined(again), { second: true }, "rejoin after leave");
    return "left";
  },

  async disconnect_then_reconnect(sockets) {
    const socket = makeSocket({ params: { id: "user:dave" } });
    sockets.push(socket);
    const control = socket.channel("control:1");
    const echo = socket.channel("echo:dave");
    let echoJoins = 0;
    echo.join().receive("ok", () => {
      echoJoins += 1;
    });
    await joined(control);
    await waitFor(() => echoJoins === 1, "the echo join");
    const closed = deferred();
    socket.onClose((event) => closed.resolve(event.code));
    await outcome(control.push("disconnect", { id: "user:dave" }));
    same(await closed.promise, 1001, "close code");
    await waitFor(() => echoJoins === 2 && socket.isConnected(), "reconnect and rejoin");
    const result = await outcome(echo.push("echo", { back: true }));
    same(result.response, { back: true }, "echo after reconnect");
    return "reconnected after 1001 and rejoined";
  },

  async heartbeat(sockets) {
    const socket = makeSocket({ heartbeatIntervalMs: 50 });
    sockets.push(socket);
    let replies = 0;
    let closes = 0;
    socket.onMessage((msg) => {
      if (msg.topic === "phoenix" && msg.event === "phx_reply" && msg.payload.status === "ok") {
        replies += 1;
      }
    });
    socket.onClose(() => {
      closes += 1;
    });
    await waitFor(() => replies >= 5, "five heartbeat replies");
    await sleep(100);
    same(closes, 0, "closes during heartbeats");
    return `${replies} heartbeats acknowledged`;
  },

  async rejected_token(sockets) {
    const socket = new Socket(URL, {
      transport: WebSocket,
      authToken: "bad",
      reconnectAfterMs: () => 1000,
    });
    sockets.push(socket);
    const errored = deferred();
    socket.onError(() => errored.resolve());
    let opened = false;
    socket.onOpen(() => {
      opened = true;
    });
    socket.connect();
    await errored.promise;
    same(opened, false, "opened");
    return "connect refused";
  },

  async presence(sockets) {
    const a = makeSocket();
    sockets.push(a);
    const channel = a.channel("room:presence", { user: "p1" });
    const presence = new Presence(channel);
    const names = () =>
      presence
        .list((key, { metas }) => `${key}:${metas.length}:${typeof metas[0].phx_ref}`)
        .sort()
        .join(",");
    let syncs = 0;
    presence.onSync(() => {
      syncs += 1;
    });
    await joined(channel);
    await waitFor(() => names() === "p1:1:string", "own presence");
    const b = makeSocket();
    sockets.push(b);
    const other = b.channel("room:presence", { user: "p2" });
    await joined(other);
    await waitFor(() => names() === "p1:1:string,p2:1:string", "second user's join diff");
    const left = deferred();
    presence.onLeave((key) => left.resolve(key));
    b.disconnect();
    same(await left.promise, "p2", "left key");
    await waitFor(() => names() === "p1:1:string", "second user's leave diff");
    check(syncs >= 3, `expected at least 3 syncs, got ${syncs}`);
    return `presence synced ${syncs} times`;
  },
};

async function run(name, scenario) {
  const sockets = [];
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${SCENARIO_MS} ms`)), SCENARIO_MS);
  });
  try {
    const detail = await Promise.race([scenario(sockets), timeout]);
    return { name, ok: true, detail };
  } catch (error) {
    return { name, ok: false, detail: String(error && error.message ? error.message : error) };
  } finally {
    clearTimeout(timer);
    for (const socket of sockets) socket.disconnect();
  }
}

let failed = 0;
for (const [name, scenario] of Object.entries(scenarios)) {
  const result = await run(name, scenario);
  if (!result.ok) failed += 1;
  console.log(JSON.stringify(result));
}
process.exit(failed === 0 ? 0 : 1);
