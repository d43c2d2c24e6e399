// misskey-js's Stream on bench/stream_server.py: note events per second.
//
//   npm install --prefix bench --no-package-lock misskey-js ws    (bench/node_modules is ignored)
//   node bench/stream_misskeyjs.mjs URL [--summary FILE]
//
// new Stream(URL, { token: 't' }, { WebSocket }) with the `ws` package, a homeTimeline
// channel (useChannel) whose 'note' handler counts notes (reading note.id) until the
// note {"id":"END"}. Events/s from the Stream's creation to END, after one warm-up run, and
// the process's CPU time (user + system, all threads) per event over the same run.
// --summary FILE appends "misskey-js events/s cpu-us/event runqueue-%" (tab-separated; the
// last as in stream_bench.lua). Prints figures only.
import { appendFileSync, readFileSync } from 'node:fs';
import { Stream } from 'misskey-js';
import WebSocket from 'ws';

const url = process.argv[2];
if (!url) {
  console.error('usage: stream_misskeyjs.mjs URL [--summary FILE]');
  process.exit(2);
}
const version = JSON.parse(readFileSync(new URL('./node_modules/misskey-js/package.json', import.meta.url))).version;
const si = process.argv.indexOf('--summary');
const summary = si > 0 ? process.argv[si + 1] : null;

function run() {
  return new Promise((resolve, reject) => {
    let count = 0;
    const t0 = process.hrtime.bigint();
    const stream = new Stream(url, { token: 't' }, { WebSocket });
    const timer = setTimeout(() => { stream.close(); reject(new Error(`timeout after ${count} notes`)); }, 60000);
    stream.useChannel('homeTimeline').on('note', (note) => {
      if (note.id === 'END') {
        const secs = Number(process.hrtime.bigint() - t0) / 1e9;
        clearTimeout(timer);
        stream.close();
        resolve({ count, secs });
      } else {
        count++;
      }
    });
  });
}

// Nanoseconds the main thread spent runnable but waiting for a CPU (/proc/self/schedstat's
// second field), or null: the share of a run the machine's other jobs took.
function runqueueNs() {
  try {
    return Number(readFileSync('/proc/self/schedstat', 'utf8').split(' ')[1]);
  } catch {
    return null;
  }
}

await run(); // warm-up (JIT)
const cpu0 = process.cpuUsage();
const q0 = runqueueNs();
const { count, secs } = await run();
const cpu = process.cpuUsage(cpu0); // every thread of the process (its GC's too), in us
const q1 = runqueueNs();
const waited = q0 === null || q1 === null ? -1 : (q1 - q0) / 1e9 / secs * 100;
const rate = count / secs;
const cpuPerEvent = (cpu.user + cpu.system) / count;
const mem = process.memoryUsage();
console.log(`stream, misskey-js ${version} (node ${process.version}, ws):` +
  ` ${count} note events`);
console.log(`  stream      ${rate.toFixed(0).padStart(9)} events/s  (${secs.toFixed(2)} s;` +
  ` heap ${(mem.heapUsed / 1048576).toFixed(0)} MB, rss ${(mem.rss / 1048576).toFixed(0)} MB after the run;` +
  ` ${cpuPerEvent.toFixed(2)} us CPU/event)`);
if (summary) appendFileSync(summary, `misskey-js\t${rate.toFixed(0)}\t${cpuPerEvent.toFixed(2)}\t${waited.toFixed(1)}\n`);
process.exit(0);
