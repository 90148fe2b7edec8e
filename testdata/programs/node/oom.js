// Run by tests/runtimes.rs with --max-old-space-size=16: V8 runs out of
// heap and aborts (FATAL ERROR … JavaScript heap out of memory).
const kept = [];
for (;;) {
  kept.push(new Array(100000).fill(1));
}
