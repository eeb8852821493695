package event

import (
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestFieldsMatchEvent walks Event with reflection and holds Fields to it:
// same fields in the same order, the JSON tags, kinds that fit the Go
// types, and accessors that reach the field they name.
func TestFieldsMatchEvent(t *testing.T) {
	typ := reflect.TypeFor[Event]()
	if typ.NumField() != len(Fields) {
		t.Fatalf("Event has %d fields, Fields %d rows: every field needs exactly one row", typ.NumField(), len(Fields))
	}
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	seen := map[string]bool{}
	since := 1
	for i := range Fields {
		f := &Fields[i]
		sf := typ.Field(i)
		if sf.Name != f.Name {
			t.Errorf("row %d is %s, Event's field %d is %s: rows follow Event's order", i, f.Name, i, sf.Name)
			continue
		}
		if tag, _, _ := strings.Cut(sf.Tag.Get("json"), ","); tag != f.JSON {
			t.Errorf("%s: json tag %q, row says %q", f.Name, tag, f.JSON)
		}
		if !snake.MatchString(f.JSON) || seen[f.JSON] {
			t.Errorf("%s: JSON name %q is not a unique snake_case ClickHouse column name", f.Name, f.JSON)
		}
		seen[f.JSON] = true
		if (f.CHType == "") != f.Transit || f.Transit && (f.CHDefault != "" || f.CHAlias != "" || f.CHChanged != 0 || f.Since == 1) {
			t.Errorf("%s: a stored field needs a ClickHouse type; a transit one, added after version 1, has none of the ClickHouse settings", f.Name)
		}
		if f.Since < since {
			t.Errorf("%s: Since %d after a row with %d: rows are appended, in version order", f.Name, f.Since, since)
		}
		since = f.Since
		if !f.Transit && (f.Since > 1) != (f.CHDefault != "") {
			t.Errorf("%s: Since %d with CHDefault %q: a column added later needs the default old rows read as, an original one none", f.Name, f.Since, f.CHDefault)
		}
		want := map[Kind]reflect.Type{KindID: reflect.TypeFor[ID](), KindTime: reflect.TypeFor[int64](), KindString: reflect.TypeFor[string](),
			KindUint: map[int]reflect.Type{8: reflect.TypeFor[uint8](), 16: reflect.TypeFor[uint16](), 32: reflect.TypeFor[uint32](), 64: reflect.TypeFor[uint64]()}[f.Bits]}[f.Kind]
		if sf.Type != want {
			t.Errorf("%s: Go type %v does not fit kind %d (bits %d)", f.Name, sf.Type, f.Kind, f.Bits)
			continue
		}
		if f.Kind == KindUint {
			if f.Str != nil || f.Max != 0 || f.Uint == nil || f.SetUint == nil || !f.Transit && f.CHType != "UInt"+strconv.Itoa(f.Bits) {
				t.Errorf("%s: a number has Uint, SetUint, Bits and the UInt type of its width, no Str or Max", f.Name)
				continue
			}
			var e Event
			f.SetUint(&e, f.MaxUint())
			v := reflect.ValueOf(&e).Elem().Field(i)
			if v.Uint() != f.MaxUint() || f.Uint(&e) != f.MaxUint() {
				t.Errorf("%s: SetUint/Uint reach another field", f.Name)
			}
			continue
		}
		if f.Kind != KindString {
			if f.Str != nil || f.Max != 0 || f.Bits != 0 {
				t.Errorf("%s: only strings have an accessor and a limit", f.Name)
			}
			continue
		}
		if f.Str == nil || f.Max <= 0 {
			t.Errorf("%s: a string needs an accessor and a limit", f.Name)
			continue
		}
		var e Event
		v := reflect.ValueOf(&e).Elem().Field(i)
		if p := f.Str(&e); p != v.Addr().Interface().(*string) {
			t.Errorf("%s: accessor points to another field", f.Name)
		}
	}
}

// Validate enforces every string field's limit, from the table.
func TestValidateLimits(t *testing.T) {
	for i := range Fields {
		f := &Fields[i]
		if f.Str == nil || f.JSON == "tier" { // two values (TestValidate)
			continue
		}
		e := valid()
		*f.Str(&e) = strings.Repeat("a", f.Max)
		if err := e.Validate(); err != nil {
			t.Errorf("%s at its limit: %v", f.JSON, err)
		}
		*f.Str(&e) += "a"
		if err := e.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), f.JSON+" longer than") {
			t.Errorf("%s over its limit: %v", f.JSON, err)
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	e := valid()
	e.URL, e.UserAgent, e.Props, e.Method = "https://example.com/", "Mozilla/5.0", `{"a":1}`, "GET"
	for b.Loop() {
		if err := e.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
