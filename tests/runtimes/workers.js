const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');
if (isMainThread) {
  let done = 0; const counts = [];
  for (let i = 0; i < 2; i++) {
    const w = new Worker(__filename, { workerData: i });
    w.on('message', (c) => { counts[i] = c; if (++done === 2) console.log('workers counted', counts, Math.random()); });
  }
} else {
  const end = Date.now() + 150; let c = 0;
  while (Date.now() < end) c++;
  parentPort.postMessage(c);
}
