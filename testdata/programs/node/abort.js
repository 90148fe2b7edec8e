// Run by tests/runtimes.rs: process.abort() two calls deep (SIGABRT).
function shutdown(reason) {
  console.error(`aborting: ${reason}`);
  process.abort();
}
function onFatal() {
  shutdown("state corrupt");
}
onFatal();
