package interrupt

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// module assembles a binary module from its sections (id, body).
func module(secs ...[]byte) []byte {
	m := []byte("\x00asm\x01\x00\x00\x00")
	for i := 0; i < len(secs); i += 2 {
		m = append(m, secs[i][0])
		m = binary.AppendUvarint(m, uint64(len(secs[i+1])))
		m = append(m, secs[i+1]...)
	}
	return m
}

func vec(items ...[]byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

func name(s string) []byte { return append(binary.AppendUvarint(nil, uint64(len(s))), s...) }

func body(locals []byte, code ...byte) []byte {
	fn := append(append([]byte(nil), locals...), code...)
	return append(binary.AppendUvarint(nil, uint64(len(fn))), fn...)
}

// testModule has an imported global (the flag's index must come after
// it), a defined global, and three exported functions:
//
//	sum(n i32) i32: 1+...+n in a loop, with a block, br_if, br_table and
//	  a memory store/load along the way
//	spin(): loops forever
//	nested(n i32) i32: n*n by two nested loops
func testModule() []byte {
	types := vec(
		[]byte{0x60, 1, 0x7F, 1, 0x7F}, // (i32) -> i32
		[]byte{0x60, 0, 0},             // () -> ()
	)
	imports := vec(append(append(name("env"), name("g")...), 0x03, 0x7F, 0x00))
	funcs := vec([]byte{0}, []byte{1}, []byte{0})
	memory := vec([]byte{0x00, 0x01})
	globals := vec([]byte{0x7F, 0x01, 0x41, 0x00, 0x0B})
	exports := vec(
		append(name("sum"), 0x00, 0),
		append(name("spin"), 0x00, 1),
		append(name("nested"), 0x00, 2),
		append(name("mem"), 0x02, 0),
	)
	sum := body(vec([]byte{1, 0x7F}), // local 1: acc
		0x02, 0x40, // block
		0x03, 0x40, // loop
		0x20, 0x00, 0x45, 0x0D, 0x01, // local.get 0; i32.eqz; br_if 1
		0x20, 0x01, 0x20, 0x00, 0x6A, 0x21, 0x01, // acc += n
		0x41, 0x00, 0x20, 0x01, 0x36, 0x02, 0x00, // mem[0] = acc
		0x41, 0x00, 0x28, 0x02, 0x00, 0x21, 0x01, // acc = mem[0]
		0x20, 0x00, 0x41, 0x7F, 0x6A, 0x21, 0x00, // n += -1
		0x41, 0x00, 0x0E, 0x01, 0x00, 0x00, // br_table [0] 0 (back to loop)
		0x0B, // end loop
		0x0B, // end block
		0x20, 0x01, 0x0B)
	spin := body(vec(), 0x03, 0x40, 0x0C, 0x00, 0x0B, 0x0B)
	nested := body(vec([]byte{3, 0x7F}), // locals 1 i, 2 j, 3 acc
		0x02, 0x40, 0x03, 0x40, // block loop
		0x20, 0x01, 0x20, 0x00, 0x4E, 0x0D, 0x01, // i >= n: out
		0x41, 0x00, 0x21, 0x02, // j = 0
		0x02, 0x40, 0x03, 0x40, // block loop
		0x20, 0x02, 0x20, 0x00, 0x4E, 0x0D, 0x01, // j >= n: out
		0x20, 0x03, 0x41, 0x01, 0x6A, 0x21, 0x03, // acc++
		0x20, 0x02, 0x41, 0x01, 0x6A, 0x21, 0x02, // j++
		0x0C, 0x00, 0x0B, 0x0B, // br loop; end; end
		0x20, 0x01, 0x41, 0x01, 0x6A, 0x21, 0x01, // i++
		0x0C, 0x00, 0x0B, 0x0B,
		0x20, 0x03, 0x0B)
	code := vec(sum, spin, nested)
	debug := append(name(".debug_info"), 1, 2, 3)
	return module(
		[]byte{1}, types, []byte{2}, imports, []byte{3}, funcs, []byte{5}, memory,
		[]byte{6}, globals, []byte{7}, exports, []byte{10}, code, []byte{0}, debug)
}

func instantiate(t *testing.T, wasm []byte) (api.Module, func()) {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx) // no WithCloseOnContextDone: only the flag stops a guest
	// The imported global comes from a tiny module of its own.
	env := module([]byte{6}, vec([]byte{0x7F, 0x00, 0x41, 0x07, 0x0B}), []byte{7}, vec(append(name("g"), 0x03, 0)))
	if _, err := rt.InstantiateWithConfig(ctx, env, wazero.NewModuleConfig().WithName("env")); err != nil {
		t.Fatal(err)
	}
	mod, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName("m"))
	if err != nil {
		t.Fatal(err)
	}
	return mod, func() { rt.Close(ctx) }
}

func TestInstrumentedBehavesTheSame(t *testing.T) {
	orig := testModule()
	inst, err := Module(orig)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(inst), ".debug_info") {
		t.Error("DWARF section kept")
	}
	a, closeA := instantiate(t, orig)
	defer closeA()
	b, closeB := instantiate(t, inst)
	defer closeB()
	ctx := context.Background()
	for _, fn := range []string{"sum", "nested"} {
		for _, n := range []uint64{0, 1, 5, 100} {
			ra, err := a.ExportedFunction(fn).Call(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			rb, err := b.ExportedFunction(fn).Call(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			if ra[0] != rb[0] {
				t.Errorf("%s(%d): original %d, instrumented %d", fn, n, ra[0], rb[0])
			}
		}
	}
	if g := b.ExportedGlobal(FlagExport); g == nil || g.Get() != 0 {
		t.Fatalf("flag global: %v", g)
	}
	// The flag is a new global after the imported and the defined one.
	if b.ExportedGlobal(FlagExport).(api.MutableGlobal) == nil {
		t.Fatal("flag is not mutable")
	}
}

func TestFlagStopsALoop(t *testing.T) {
	inst, err := Module(testModule())
	if err != nil {
		t.Fatal(err)
	}
	mod, closeMod := instantiate(t, inst)
	defer closeMod()
	flag := mod.ExportedGlobal(FlagExport).(api.MutableGlobal)
	done := make(chan error, 1)
	go func() {
		_, err := mod.ExportedFunction("spin").Call(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("spin returned before the flag was set: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	// The spinning guest visits Go often enough for a stop-the-world
	// collection to complete (compiled code cannot be preempted).
	gc := make(chan struct{})
	go func() { runtime.GC(); close(gc) }()
	select {
	case <-gc:
	case <-time.After(10 * time.Second):
		t.Fatal("a garbage collection did not complete while a guest spun")
	}
	flag.Set(1)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("spin ended with %v, want the flag check's trap", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("spin still runs 10s after its flag was set")
	}
	// A set flag stops any loop within RefillEvery iterations.
	if _, err := mod.ExportedFunction("nested").Call(context.Background(), 1000); err == nil {
		t.Fatal("nested ran a million iterations with its flag set")
	}
}

func TestAddsMissingSections(t *testing.T) {
	// No global and no export section: both are added, in order.
	m := module([]byte{1}, vec([]byte{0x60, 0, 0}), []byte{3}, vec([]byte{0}), []byte{5}, vec([]byte{0x00, 0x01}),
		[]byte{10}, vec(body(vec(), 0x03, 0x40, 0x0B, 0x0B)))
	inst, err := Module(m)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	mod, err := rt.Instantiate(ctx, inst)
	if err != nil {
		t.Fatal(err)
	}
	if mod.ExportedGlobal(FlagExport) == nil {
		t.Fatal("no flag exported")
	}
}

func TestUnsupported(t *testing.T) {
	// A SIMD instruction (v128.const) in a body.
	code := append([]byte{0xFD, 0x0C}, make([]byte, 16)...)
	code = append(code, 0x1A, 0x0B)
	m := module([]byte{1}, vec([]byte{0x60, 0, 0}), []byte{3}, vec([]byte{0}), []byte{5}, vec([]byte{0x00, 0x01}),
		[]byte{10}, vec(body(vec(), code...)))
	if _, err := Module(m); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("got %v, want ErrUnsupported", err)
	}
	noMemory := module([]byte{1}, vec([]byte{0x60, 0, 0}), []byte{3}, vec([]byte{0}),
		[]byte{10}, vec(body(vec(), 0x03, 0x40, 0x0B, 0x0B)))
	if _, err := Module(noMemory); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("a module without memory: %v, want ErrUnsupported", err)
	}
	if _, err := Module([]byte("\x00asm\x01\x00\x00\x00\x0A\x05")); err == nil {
		t.Fatal("a truncated module was accepted")
	}
}
