// Run by tests/runtimes.rs: an uncaught exception (exit 1). Lines asserted.
function parseConfig(text) {
  return JSON.parse(text);
}
function start() {
  parseConfig("{port:");
}
start();
