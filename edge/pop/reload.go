package pop

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/edgepixel/edgepixel/shared/permhint"
)

// A program is one compiled version of the module with its own wazero
// Runtime: the fastly_* host modules are instantiated into a Runtime by
// name, and a new module version may import a different set of them, so
// each version gets a fresh Runtime (sharing the on-disk compilation
// cache, so a module seen before compiles instantly). Hot reload swaps
// Server.cur; instances belong to the program they were started from and
// receive requests only from its dispatch, so once the swap happens no
// new request reaches the old version, while requests already handed to it
// finish there. The old program's idle instances are then told there are
// no more requests (they exit cleanly, running any code after their serve
// loop) and its Runtime is closed when its last instance ends.
type program struct {
	id  uint64
	sum [sha256.Size]byte

	rt       wazero.Runtime
	cache    wazero.CompilationCache // nil without a cache directory
	compiled wazero.CompiledModule
	// interruptible: compiled is instrumented by package interrupt, and
	// an instance is stopped by setting its flag (instance.run).
	interruptible bool

	// d hands client requests to this program's idle instances (pool.go).
	d           dispatch
	retired     chan struct{} // closed when the program must take no more requests
	retireOnce  sync.Once
	releaseOnce sync.Once
	startFailed chan error

	live, starting, idle, retiring atomic.Int32
}

func (p *program) isRetired() bool {
	select {
	case <-p.retired:
		return true
	default:
		return false
	}
}

// fileStamp identifies a version of the module file cheaply.
type fileStamp struct {
	size, mtime int64 // mtime in Unix nanoseconds
}

// statManifest is the stamp of the manifest at path and the config
// store files it names, as one: a change to any of them changes it.
func statManifest(path string, files []string) (fileStamp, error) {
	st, err := statFile(path)
	if err != nil {
		return st, err
	}
	h := fnv.New64a()
	for _, f := range files {
		fs, err := statFile(f)
		if err != nil {
			return fileStamp{}, err
		}
		binary.Write(h, binary.LittleEndian, [2]int64{fs.size, fs.mtime})
	}
	st.size ^= int64(h.Sum64())
	return st, nil
}

func statFile(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.Size(), fi.ModTime().UnixNano()}, nil
}

// readModule reads the module and the stamp of the file it read.
func readModule(path string) ([]byte, fileStamp, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileStamp{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStamp{}, err
	}
	wasm, err := io.ReadAll(f)
	return wasm, fileStamp{fi.Size(), fi.ModTime().UnixNano()}, err
}

// loadProgram compiles wasm in a new Runtime and links its hostcalls.
func (s *Server) loadProgram(ctx context.Context, wasm []byte) (_ *program, err error) {
	code, interruptible, ierr := prepareModule(wasm)
	rtCfg, cache, err := runtimeConfig(s.cacheDir, interruptible)
	if err != nil {
		return nil, err
	}
	p := &program{
		interruptible: interruptible,
		id:            s.progID.Add(1),
		sum:           sha256.Sum256(wasm),
		cache:         cache,
		retired:       make(chan struct{}),
		startFailed:   make(chan error, 1),
	}
	// The runtime outlives ctx; release closes it.
	p.rt = wazero.NewRuntimeWithConfig(context.Background(), rtCfg)
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, p.rt); err != nil {
		return nil, err
	}
	began := time.Now()
	if p.compiled, err = p.rt.CompileModule(ctx, code); err != nil {
		return nil, fmt.Errorf("compiling %s: %w", s.wasmPath, err)
	}
	// Only now: a module that is not valid wasm cannot be instrumented
	// either, and the warning would come before the error that matters.
	if ierr != nil {
		s.log.Warn("module cannot be instrumented for cheap interruption; wazero checks for it at every loop instead, which is slower",
			"wasm", s.wasmPath, "err", ierr)
	}
	s.log.Debug("module compiled", "wasm", s.wasmPath, "program", p.id, "took", time.Since(began))
	if err := s.linkHostModules(ctx, p.rt, p.compiled); err != nil {
		return nil, err
	}
	s.progMu.Lock()
	s.progs[p] = struct{}{}
	s.progMu.Unlock()
	return p, nil
}

// close frees the program's compiled code and Runtime. Only once no
// instance of it runs.
func (p *program) close() {
	p.releaseOnce.Do(func() {
		ctx := context.Background()
		if p.rt != nil {
			p.rt.Close(ctx)
		}
		if p.compiled != nil {
			p.compiled.Close(ctx)
		}
		if p.cache != nil {
			p.cache.Close(ctx)
		}
	})
}

func (s *Server) release(p *program) {
	s.progMu.Lock()
	delete(s.progs, p)
	s.progMu.Unlock()
	p.close()
}

// retire stops p from taking requests: its idle instances end, busy ones
// end after their current request. p is released with its last instance.
func (s *Server) retire(p *program) {
	s.spawnMu.Lock() // spawn checks retired under spawnMu: no instance starts after this
	p.retireOnce.Do(func() { close(p.retired) })
	s.spawnMu.Unlock()
	if p.live.Load() == 0 {
		s.release(p)
	}
}

// startWarm starts p's warm instances and waits until they all wait for
// requests. It fails if one of them fails to start, the server shuts
// down, or ctx ends.
func (s *Server) startWarm(ctx context.Context, p *program) error {
	for range s.minInstances {
		s.spawn(p)
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for int(p.idle.Load()) < s.minInstances {
		select {
		case err := <-p.startFailed:
			return fmt.Errorf("guest failed to start: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closing:
			return errors.New("shutting down")
		case <-tick.C:
		}
	}
	return nil
}

// Reload reads fastly.toml's config stores and the secret stores again
// (reloadConfig, reloadSecrets) and loads the module file again; if the
// module or the config stores changed, it starts warm instances (of the
// new module, compiled) and, once they run, new requests go to them and
// the old ones drain (in-flight requests finish on them). If the new
// module does not compile or its instances fail to start, the old one
// keeps serving and the error is returned (and logged); so is a
// fastly.toml that no longer reads or that Config.CheckManifest refuses,
// whose stores then stay as they were.
// Both show on /healthz (Degraded) until a reload succeeds. Safe to call
// at any time; reloads are serialised.
func (s *Server) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.isClosing() {
		return errors.New("shutting down")
	}
	if path := s.manifestPath(); path != "" {
		// Remembered before reading, so the watcher retries only when the
		// file changes again.
		s.manifestStamp, _ = statManifest(path, s.configFiles)
	}
	configChanged, cerr := s.reloadConfig()
	cerr = permhint.Wrap("the POP", cerr)
	if cerr != nil {
		s.log.Error("fastly.toml read again is not taken (it does not read, or is refused); its config and secret stores stay as read before", "err", cerr)
		why := "fastly.toml read again is not taken (" + strings.ReplaceAll(cerr.Error(), "\n", " ") + "); its stores stay as read before"
		s.configFailure.Store(&why)
	} else if s.configFailure.Swap(nil) != nil {
		s.log.Info("fastly.toml reads again and is taken: the failure logged before is over", "config", s.manifestPath())
	}
	// Changed secrets replace the instances as changed config stores do
	// (a tester rotated aggregator_secret under --watch and instances
	// kept signing with the old one).
	secretsChanged := s.reloadSecrets()
	s.configPending = s.configPending || configChanged || secretsChanged
	old := s.cur.Load()
	err := permhint.Wrap("the POP", s.reload(ctx, old, s.configPending))
	if err != nil {
		s.ps.reloadFailures.Add(1)
		s.log.Error("module reload failed; still serving the previous version", "wasm", s.wasmPath, "program", old.id, "err", err)
		// One line of /healthz, naming the file.
		why := strings.ReplaceAll(err.Error(), "\n", " ")
		if !strings.Contains(why, s.wasmPath) {
			why = s.wasmPath + ": " + why
		}
		why = "module reload failed (" + why + "); still serving the previous version"
		s.reloadFailure.Store(&why)
	} else {
		s.configPending = false
		// A failure put right by the file put back as it was reloads
		// nothing and logged nothing, and the log showed only the error
		// (a tester's).
		if s.reloadFailure.Swap(nil) != nil {
			s.log.Info("module reload no longer fails: the failure logged before is over", "wasm", s.wasmPath, "program", s.cur.Load().id)
		}
	}
	return errors.Join(cerr, err)
}

// reload switches to the module file's version if it differs from old's,
// or to a new program of it anyway when fresh (new instances for changed
// config stores).
func (s *Server) reload(ctx context.Context, old *program, fresh bool) error {
	wasm, stamp, err := readModule(s.wasmPath)
	// Remembered even when this version turns out broken, so the watcher
	// retries only when the file changes again.
	s.stamp = stamp
	if err != nil {
		return err
	}
	if sha256.Sum256(wasm) == old.sum && !fresh {
		return nil // touched, not changed
	}
	began := time.Now()
	p, err := s.loadProgram(ctx, wasm)
	if err != nil {
		return err
	}
	if err := s.startWarm(ctx, p); err != nil {
		s.retire(p)
		return err
	}
	s.spawnMu.Lock()
	s.cur.Store(p)
	s.spawnMu.Unlock()
	s.retire(old)
	s.ps.reloads.Add(1)
	what := "module reloaded"
	if p.sum == old.sum {
		what = "config or secret stores changed: instances replaced"
	}
	s.log.Info(what, "wasm", s.wasmPath, "program", p.id, "previous", old.id,
		"draining", old.live.Load(), "took", time.Since(began))
	return nil
}

// watch polls the module file and fastly.toml with the files its config
// stores name (statManifest) and reloads when either changed and has
// been stable for one interval (so a file still being written is not
// loaded half-way; a rename into place is picked up one interval later).
// The secret stores' files are read at every look, and a change to them
// reloads at once.
func (s *Server) watch(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	manifest := s.manifestPath()
	var last [2]fileStamp
	reload := func() {
		ctx, cancel := context.WithCancel(context.Background())
		stop := context.AfterFunc(s.root, cancel)
		s.Reload(ctx) // logs its own failure
		stop()
		cancel()
	}
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		if s.reloadSecrets() {
			// Read here, so the Reload's own reading finds no change: the
			// instances are due for replacement all the same.
			s.reloadMu.Lock()
			s.configPending = true
			s.reloadMu.Unlock()
			reload()
			continue
		}
		var st [2]fileStamp
		var err error
		if st[0], err = statFile(s.wasmPath); err != nil {
			continue // e.g. briefly absent while being replaced
		}
		s.reloadMu.Lock()
		loaded, files := [2]fileStamp{s.stamp, s.manifestStamp}, s.configFiles
		s.reloadMu.Unlock()
		if manifest != "" {
			if st[1], err = statManifest(manifest, files); err != nil {
				continue
			}
		}
		if st == loaded || st != last {
			last = st
			continue
		}
		reload()
	}
}
