// The phoenix.js side of the presence benchmark (benchmarks/_presence.py drives it).
//
// A phoenix.js 1.8 `Presence` (from tests/js/node_modules) on a fake channel, measured on the
// same workload files and the same operations as trio_phoenix's view, one request at a time:
//   * on start, prints one line: {"ready": true, "phoenix": "<version>", "node": "<version>"}
//   * then reads JSON lines {"op": ..., "workload": <path>, "count": N} and answers each with
//     {"seconds": <total time of the timed part>}.
// A workload file is {"state": {...}, "diffs": [{"joins": ..., "leaves": ...}, ...]}. Payloads
// are parsed from its text before timing, as a channel parses a frame before delivering it.

import {readFileSync} from "node:fs"
import {createRequire} from "node:module"
import {createInterface} from "node:readline"

const packages = new URL("../tests/js/", import.meta.url)
const {Presence} = createRequire(packages)("phoenix")
const {version} = JSON.parse(
  readFileSync(new URL("node_modules/phoenix/package.json", packages), "utf8"))

class FakeChannel {
  constructor(){
    this.bindings = new Map()
    this.currentJoinRef = "1"
  }

  on(event, callback){ this.bindings.set(event, callback) }

  joinRef(){ return this.currentJoinRef }

  deliver(event, payload){ this.bindings.get(event)(payload) }
}

const texts = new Map()
function load(path){
  if(!texts.has(path)){ texts.set(path, readFileSync(path, "utf8")) }
  return JSON.parse(texts.get(path))
}

function synced(workload){
  const channel = new FakeChannel()
  const presence = new Presence(channel)
  channel.deliver("presence_state", workload.state)
  return {channel, presence}
}

const now = () => process.hrtime.bigint()
const seconds = (start) => Number(now() - start) / 1e9
let sink = 0

const OPS = {
  // Apply `count` diffs (one join and one leave each) to a synced view.
  diff(workload, count){
    const {channel} = synced(workload)
    const diffs = workload.diffs.slice(0, count)
    const start = now()
    for(const diff of diffs){ channel.deliver("presence_diff", diff) }
    return seconds(start)
  },
  // `count` times: apply one diff (not timed), then time one list().
  list(workload, count){
    const {channel, presence} = synced(workload)
    let total = 0
    for(let i = 0; i < count; i++){
      channel.deliver("presence_diff", workload.diffs[i])
      const start = now()
      sink += presence.list().length
      total += seconds(start)
    }
    return total
  },
  // The first presence_state of a join, on an empty view.
  sync(workload){
    const channel = new FakeChannel()
    new Presence(channel)
    const start = now()
    channel.deliver("presence_state", workload.state)
    return seconds(start)
  },
  // A rejoin: the same state again, under a new join ref, on a synced view.
  resync(workload, count, path){
    const {channel} = synced(workload)
    const state = load(path).state
    channel.currentJoinRef = "2"
    const start = now()
    channel.deliver("presence_state", state)
    return seconds(start)
  },
  // `count` one-key reads: one key again and again.
  get(workload, count){
    const {presence} = synced(workload)
    const keys = lookupKeys(workload, count, false)
    const start = now()
    for(const key of keys){ if(presence.state[key] !== undefined){ sink++ } }
    return seconds(start)
  },
  in(workload, count){
    const {presence} = synced(workload)
    const keys = lookupKeys(workload, count, false)
    const start = now()
    for(const key of keys){ if(key in presence.state){ sink++ } }
    return seconds(start)
  },
  // `count` one-key reads of every key in turn, in a scattered order.
  scan(workload, count){
    const {presence} = synced(workload)
    const keys = lookupKeys(workload, count, true)
    const start = now()
    for(const key of keys){ if(presence.state[key] !== undefined){ sink++ } }
    return seconds(start)
  },
  // phoenix.js has no count: what a phoenix.js user writes.
  len(workload, count){
    const {presence} = synced(workload)
    const start = now()
    for(let i = 0; i < count; i++){ sink += Object.keys(presence.state).length }
    return seconds(start)
  },
}

// The middle key `count` times, or the keys of the state visited with a stride coprime to
// their number (scattered, each one once per pass): the same sequences as on the Python side.
function lookupKeys(workload, count, scattered){
  const all = Object.keys(workload.state)
  const keys = new Array(count)
  for(let i = 0; i < count; i++){
    keys[i] = scattered ? all[(i * 7919) % all.length] : all[Math.floor(all.length / 2)]
  }
  return keys
}

const write = (value) => process.stdout.write(JSON.stringify(value) + "\n")
write({ready: true, phoenix: version, node: process.version})

for await (const line of createInterface({input: process.stdin, crlfDelay: Infinity})){
  if(line.trim() === ""){ continue }
  const request = JSON.parse(line)
  const workload = load(request.workload)
  write({seconds: OPS[request.op](workload, request.count, request.workload), sink: sink % 2})
}
