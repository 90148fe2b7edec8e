// Run by tests/runtimes.rs: an unhandled rejection of an async function
// (exit 1), or with `value`, of a promise rejected with a string.
async function connect(host) {
  throw new Error(`connection refused: ${host}`);
}
if (process.argv[2] === "value") {
  Promise.reject("plain string reason");
} else {
  connect("db.internal");
}
