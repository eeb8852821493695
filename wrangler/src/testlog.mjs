// For the tests (src/post.test.mjs, test/*.test.mjs); the worker does not
// import it.

// logged runs f with console.error captured and returns the lines it
// logged (the module's stderr reaches console.error too).
export async function logged(f) {
  const lines = [];
  const orig = console.error;
  console.error = (...a) => lines.push(a.join(" "));
  try {
    await f();
  } finally {
    console.error = orig;
  }
  return lines;
}
