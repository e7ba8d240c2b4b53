// Presence oracle: runs presence cases through the real phoenix.js `Presence`.
//
// Protocol (one long-running process serves many cases):
//   * on start, prints one line: {"ready": true, "phoenix": "<npm package version>"}
//   * then reads JSON lines on stdin, one case each, and answers each with one JSON line.
//
// Cases:
//   {"kind": "instance", "ops": [{"op": "state" | "diff", "payload": ..., "join_ref": ...}, ...]}
//       A `new Presence(channel)` on a fake channel whose joinRef() returns the op's join_ref
//       when the op's event is delivered (so rejoins are simulated by changing join_ref).
//       Answer: {"steps": [{"calls", "state", "list", "keys", "pending", "join_ref"}, ...]},
//       one step per op, taken right after the op.
//   {"kind": "sync_state", "state": ..., "new_state": ...}
//   {"kind": "sync_diff", "state": ..., "diff": ...}
//       The static functions. Answer: {"calls", "state"}.
//
// "calls" lists every callback in call order: ["join", key, current, joined],
// ["leave", key, current, left], ["sync"]; arguments are snapshots (JSON copies) taken at call
// time, `undefined` written as null. "state" is a list of [key, presence] pairs in
// Object.getOwnPropertyNames order, so the key order is explicit. If phoenix.js throws, the
// answer is {"error": "..."}.
//
// Payloads come from JSON.parse, as they do in a real channel, so a "__proto__" key is an own
// property.

import {readFileSync} from "node:fs"
import {createInterface} from "node:readline"
import {Presence} from "phoenix"

const snapshot = (value) => value === undefined ? null : JSON.parse(JSON.stringify(value))
const entries = (obj) => Object.getOwnPropertyNames(obj).map(key => [key, snapshot(obj[key])])

// Callbacks that hand each call, with snapshots of its arguments, to `record`.
const recorder = (record) => ({
  onJoin: (key, current, joined) => record(["join", key, snapshot(current), snapshot(joined)]),
  onLeave: (key, current, left) => record(["leave", key, snapshot(current), snapshot(left)]),
  onSync: () => record(["sync"]),
})

class FakeChannel {
  constructor(){
    this.bindings = new Map()
    this.currentJoinRef = null
  }

  on(event, callback){ this.bindings.set(event, callback) }

  joinRef(){ return this.currentJoinRef }

  deliver(event, payload, joinRef){
    this.currentJoinRef = joinRef
    this.bindings.get(event)(payload)
  }
}

const EVENTS = {state: "presence_state", diff: "presence_diff"}

function runInstance(ops){
  const channel = new FakeChannel()
  const presence = new Presence(channel)
  let calls = []
  const {onJoin, onLeave, onSync} = recorder((call) => calls.push(call))
  presence.onJoin(onJoin)
  presence.onLeave(onLeave)
  presence.onSync(onSync)
  return {
    steps: ops.map(({op, payload, join_ref}) => {
      calls = []
      if(!(op in EVENTS)){ throw new Error(`unknown op ${JSON.stringify(op)}`) }
      channel.deliver(EVENTS[op], payload, join_ref)
      return {
        calls: calls,
        state: entries(presence.state),
        list: snapshot(presence.list()),
        keys: presence.list((key) => key),
        pending: presence.pendingDiffs.length,
        join_ref: presence.joinRef,
      }
    }),
  }
}

function runStatic(testCase){
  const calls = []
  const {onJoin, onLeave} = recorder((call) => calls.push(call))
  let state
  if(testCase.kind === "sync_state"){
    state = Presence.syncState(testCase.state, testCase.new_state, onJoin, onLeave)
  } else {
    state = Presence.syncDiff(testCase.state, testCase.diff, onJoin, onLeave)
  }
  return {calls: calls, state: entries(state)}
}

function run(line){
  const testCase = JSON.parse(line)
  switch(testCase.kind){
    case "instance": return runInstance(testCase.ops)
    case "sync_state":
    case "sync_diff": return runStatic(testCase)
    default: throw new Error(`unknown case kind ${JSON.stringify(testCase.kind)}`)
  }
}

const write = (value) => process.stdout.write(JSON.stringify(value) + "\n")

const pkg = JSON.parse(readFileSync(new URL("./node_modules/phoenix/package.json", import.meta.url)))
write({ready: true, phoenix: pkg.version})

for await (const line of createInterface({input: process.stdin, crlfDelay: Infinity})){
  if(line.trim() === ""){ continue }
  let answer
  try {
    answer = run(line)
  } catch(error){
    answer = {error: String(error && error.stack || error)}
  }
  write(answer)
}
