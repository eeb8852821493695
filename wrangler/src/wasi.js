// A minimal WASI (wasi_snapshot_preview1) for a Go reactor on Workers:
// what the Go runtime (standard Go and TinyGo) calls as it runs, and an
// ENOSYS answer for every other import the module declares. There is no
// file system, no arguments and no environment: configuration comes in
// through the module's own exports (ep_init).
//
// Function semantics: https://github.com/WebAssembly/WASI/blob/main/legacy/preview1/docs.md

const ESUCCESS = 0;
const EBADF = 8;
const ENOSYS = 52;

// ProcExit is thrown by proc_exit: the module is dead and must not be
// called again.
export class ProcExit extends Error {
  constructor(code) {
    super(`wasm module exited with code ${code}`);
    this.code = code;
  }
}

// wasiImports returns the import object for module, reading and writing
// memory through memory() (set once the instance exists). Lines written
// to fd 1 and 2 go to console.log and console.error. clock, if given,
// is both clocks in milliseconds (tests stop time with it).
export function wasiImports(module, memory, clock) {
  const decoder = new TextDecoder();
  const pending = { 1: "", 2: "" };
  const view = () => new DataView(memory().buffer);
  const fns = {
    fd_write(fd, iovs, iovsLen, nwritten) {
      if (fd !== 1 && fd !== 2) return EBADF;
      const dv = view();
      const mem = new Uint8Array(memory().buffer);
      let n = 0;
      let text = "";
      for (let i = 0; i < iovsLen; i++) {
        const ptr = dv.getUint32(iovs + i * 8, true);
        const len = dv.getUint32(iovs + i * 8 + 4, true);
        text += decoder.decode(mem.subarray(ptr, ptr + len), { stream: true });
        n += len;
      }
      let buf = pending[fd] + text;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        (fd === 1 ? console.log : console.error)(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      pending[fd] = buf;
      dv.setUint32(nwritten, n, true);
      return ESUCCESS;
    },
    random_get(ptr, len) {
      const mem = new Uint8Array(memory().buffer, ptr, len);
      // getRandomValues fills at most 65536 bytes per call.
      for (let off = 0; off < len; off += 65536) {
        crypto.getRandomValues(mem.subarray(off, Math.min(len, off + 65536)));
      }
      return ESUCCESS;
    },
    clock_time_get(id, precision, out) {
      // Workers' clocks advance only across I/O (a Spectre mitigation):
      // within one request time stands still, which the Go side allows.
      const ms = clock ? clock() : id === 0 ? Date.now() : performance.now();
      const ns = BigInt(Math.round(ms * 1e6));
      view().setBigUint64(out, ns, true);
      return ESUCCESS;
    },
    args_sizes_get(argc, bufSize) {
      const dv = view();
      dv.setUint32(argc, 0, true);
      dv.setUint32(bufSize, 0, true);
      return ESUCCESS;
    },
    args_get() { return ESUCCESS; },
    environ_sizes_get(count, bufSize) {
      const dv = view();
      dv.setUint32(count, 0, true);
      dv.setUint32(bufSize, 0, true);
      return ESUCCESS;
    },
    environ_get() { return ESUCCESS; },
    fd_fdstat_get(fd, out) {
      if (fd > 2) return EBADF;
      const dv = view();
      dv.setUint8(out, 2, true); // character device
      dv.setUint16(out + 2, 0, true);
      dv.setBigUint64(out + 8, 0n, true);
      dv.setBigUint64(out + 16, 0n, true);
      return ESUCCESS;
    },
    fd_prestat_get() { return EBADF; }, // no preopened directories
    sched_yield() { return ESUCCESS; },
    proc_exit(code) { throw new ProcExit(code); },
  };
  const wasi = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module !== "wasi_snapshot_preview1" || imp.kind !== "function") continue;
    wasi[imp.name] = fns[imp.name] ?? (() => ENOSYS);
  }
  return { wasi_snapshot_preview1: wasi };
}
