package build

import (
	"strings"
	"testing"
)

// producersModule is a module holding only a producers section with the
// given fields (name -> tool -> version, one tool each).
func producersModule(fields ...[3]string) []byte {
	str := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	body := str("producers")
	body = append(body, byte(len(fields)))
	for _, f := range fields {
		body = append(body, str(f[0])...)
		body = append(body, 1)
		body = append(body, str(f[1])...)
		body = append(body, str(f[2])...)
	}
	m := []byte("\x00asm\x01\x00\x00\x00")
	m = append(m, 0, byte(len(body)))
	return append(m, body...)
}

func TestIdentify(t *testing.T) {
	for _, tc := range []struct {
		name string
		wasm []byte
		want Toolchain
	}{
		{"TinyGo", producersModule([3]string{"language", "C99", ""}, [3]string{"processed-by", "TinyGo", "0.41.0"}), TinyGo},
		{"Go", producersModule([3]string{"language", "Go", "go1.26.8"}, [3]string{"processed-by", "Go cmd/compile", "go1.26.8"}), Go},
	} {
		got, err := Identify(tc.wasm)
		if err != nil || got != tc.want {
			t.Errorf("%s: %v %v", tc.name, got, err)
		}
	}
	p, err := Producers(producersModule([3]string{"processed-by", "TinyGo", "0.41.0"}))
	if err != nil || p["processed-by"]["TinyGo"] != "0.41.0" {
		t.Errorf("producers: %v %v", p, err)
	}
	if _, err := Identify(producersModule([3]string{"language", "Rust", "1.80"})); err == nil {
		t.Error("a Rust module was identified")
	}
	if _, err := Identify([]byte("\x7fELF....")); err == nil {
		t.Error("an ELF file was read as wasm")
	}
	truncated := producersModule([3]string{"processed-by", "TinyGo", "0.41.0"})
	if _, err := Producers(truncated[:len(truncated)-3]); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated module: %v", err)
	}
}
